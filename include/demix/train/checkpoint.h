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
//   manifest.json         size and checksum of every file above, written last (core/manifest.h)
// Tensor files are safetensors: Python reads them with safetensors.torch.load_file(path).
// `<run>/checkpoints/latest` names the newest complete checkpoint. Experts are stored by domain,
// never by rank or slot, so a checkpoint loads into any placement.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
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
// `groups`, every rank calls it and writes what it owns. `after_model_files` runs once this rank's
// parameter files are written, before its optimizer files (fault injection: a half-written one).
std::string save_checkpoint(const std::string& run_dir, model::GptImpl& model,
                            const AdamW* optimizer, const Config& config, TrainState state,
                            int64_t keep, dist::ProcessGroups* groups = nullptr,
                            const std::function<void()>& after_model_files = {});

// Writes meta.json and config.yaml of a checkpoint directory (the expert order is data.domains),
// then its manifest: call it once every other file is written.
void seal_checkpoint(const std::string& checkpoint, const Config& config, TrainState state);

// Refuses, before any training, a run directory that cannot be created or written, or whose file
// system has less than `checkpoint_bytes` free. Every rank may call it (`rank` names its probe).
void check_run_dir(const std::string& run_dir, uintmax_t checkpoint_bytes, int rank = 0);

// A checkpoint directory, or a run directory / checkpoints directory (then its `latest`). Throws
// when a file of its manifest is missing or has the wrong size; load_model and load_optimizer
// verify the checksum of each file they read.
std::string resolve_checkpoint(const std::string& path);

// The newest checkpoint of a run whose every file matches its manifest, "" if there is none;
// warns about each newer one it skips (`--resume auto` after a crash or a corrupted file).
std::string latest_valid_checkpoint(const std::string& run_dir);

Config checkpoint_config(const std::string& checkpoint);
TrainState checkpoint_state(const std::string& checkpoint);
// Loads the shared parameters and every expert the model hosts (with `only`, the parameters it
// accepts by name); throws Error on a missing or mismatched tensor.
void load_model(const std::string& checkpoint, model::GptImpl& model,
                const std::function<bool(const std::string&)>& only = {});
void load_optimizer(const std::string& checkpoint, AdamW& optimizer);

}  // namespace demix::train
