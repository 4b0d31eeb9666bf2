#pragma once

// A checkpoint is a directory, written as `step_<N>.tmp/` and renamed into place when complete:
//   shared.safetensors            every shared parameter (embeddings, attention, LayerNorms,
//                                 dense FFs)
//   experts/<domain>.safetensors  one file per expert, keyed by domain name; tensor names drop
//                                 `experts.<id>` (blocks.3.ff.fc1.weight)
//   optimizer/                    AdamW moments and step counts (exp_avg/<name>, ...), split
//                                 the same way: shared.safetensors, experts/<domain>.safetensors
//   meta.json             format, step, data cursor, expert order (domains), tokenizer
//   config.yaml           the resolved config of the run
// Tensor files are safetensors: Python reads them with safetensors.torch.load_file(path).
// `<run>/checkpoints/latest` names the newest complete checkpoint. Experts are stored by domain,
// never by rank or slot, so a checkpoint loads into any placement.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "demix/core/config.h"
#include "demix/core/safetensors.h"
#include "demix/dist/process_groups.h"
#include "demix/model/gpt.h"

namespace demix::train {

class AdamW;

struct TrainState {
  int64_t step = 0;          // optimizer steps completed
  uint64_t data_cursor = 0;  // DomainBatcher cursor
};

// Writes a checkpoint of `model` (and `optimizer`, if given) under <run_dir>/checkpoints/, updates
// `latest`, keeps the newest `keep` checkpoints, and returns the checkpoint's directory. With
// `groups`, every rank calls it and writes what it owns.
std::string save_checkpoint(const std::string& run_dir, model::GptImpl& model,
                            const AdamW* optimizer, const Config& config, TrainState state,
                            int64_t keep, dist::ProcessGroups* groups = nullptr);

// Writes meta.json and config.yaml of a checkpoint directory (the expert order is data.domains).
void write_metadata(const std::string& checkpoint, const Config& config, TrainState state);

// A checkpoint directory, or a run directory / checkpoints directory (then its `latest`).
std::string resolve_checkpoint(const std::string& path);

Config checkpoint_config(const std::string& checkpoint);
TrainState checkpoint_state(const std::string& checkpoint);
// Loads the shared parameters and every expert the model hosts; throws Error on a missing or
// mismatched tensor.
void load_model(const std::string& checkpoint, model::GptImpl& model);
void load_optimizer(const std::string& checkpoint, AdamW& optimizer);

}  // namespace demix::train
