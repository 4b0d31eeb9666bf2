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
#include "demix/model/gpt.h"
#include "demix/parallel/process_groups.h"

namespace demix::optim {
class AdamW;
}

namespace demix::checkpoint {

struct TrainState {
  int64_t step = 0;          // optimizer steps completed
  uint64_t data_cursor = 0;  // DomainBatcher cursor
};

// Writes a checkpoint of `model` (and `optimizer`, if given) under <run_dir>/checkpoints/, updates
// `latest`, keeps the newest `keep` checkpoints, and returns the checkpoint's directory. With
// `groups`, every rank calls it and writes what it owns. `after_model_files` runs once this rank's
// parameter files are written, before its optimizer files (fault injection: a half-written one).
std::string save_checkpoint(const std::string& run_dir, model::GptImpl& model,
                            const optim::AdamW* optimizer, const Config& config, TrainState state,
                            int64_t keep, parallel::ProcessGroups* groups = nullptr,
                            const std::function<void()>& after_model_files = {});

// Writes meta.json and config.yaml of a checkpoint directory (the expert order is data.domains),
// then its manifest: call it once every other file is written.
void seal_checkpoint(const std::string& checkpoint, const Config& config, TrainState state);

// Refuses, before any training, a run directory that cannot be created or written, or whose file
// system has less than `checkpoint_bytes` free. Every rank may call it (`rank` names its probe).
void check_run_dir(const std::string& run_dir, uintmax_t checkpoint_bytes, int rank = 0);

// A checkpoint directory, or a run directory / checkpoints directory (then its `latest`). Throws
// when a file of its manifest is missing or has the wrong size, or when meta.json or config.yaml
// differs from its checksum or holds a bad value; load_model and load_optimizer verify the
// checksum of each tensor file they read.
std::string resolve_checkpoint(const std::string& path);

// The newest checkpoint of a run whose every file matches its manifest, "" if there is none;
// warns about each newer one it skips (`--resume auto` after a crash or a corrupted file).
std::string latest_valid_checkpoint(const std::string& run_dir);

// config.yaml and meta.json, each checked against the manifest before it is read. A negative
// step or data cursor is refused.
Config checkpoint_config(const std::string& checkpoint);
TrainState checkpoint_state(const std::string& checkpoint);

// Loads the shared parameters and every expert the model hosts, strictly: every tensor of each
// file read has its place in the model, every parameter is found with its shape, and the
// attention head count and depth equal the checkpoint's (model.n_head, model.n_layer), or Error
// names the checkpoint, key and both values. The model's experts are the checkpoint's, in its
// order. With `only`, just the parameters it accepts by name are loaded (a LoRA or MoDE
// backbone); the others are left as they are.
void load_model(const std::string& checkpoint, model::GptImpl& model,
                const std::function<bool(const std::string&)>& only = {});
// The same for a run whose config may list the experts in another order: the model's expert i is
// the run's data.domains[i], read from that domain's file (a +DOMAIN-TOKEN or MoDE model, whose
// shared tensors keep the checkpoint's order, is refused in another order).
void load_model(const std::string& checkpoint, model::GptImpl& model, const Config& run);
void load_optimizer(const std::string& checkpoint, optim::AdamW& optimizer);
void load_optimizer(const std::string& checkpoint, optim::AdamW& optimizer, const Config& run);

// Each expert file (experts/<domain>.safetensors and optimizer/experts/<domain>.safetensors)
// records its domain in its safetensors metadata; a file whose record names another domain is
// refused (files from before the record have none and are accepted).
std::map<std::string, std::string> expert_file_metadata(const std::string& domain);
void check_expert_domain(const std::string& file, const std::string& domain);
// A shared.safetensors whose tensors keep one row or stack per domain (MoDE, +DOMAIN-TOKEN)
// records the domains, comma-separated in order, under "domains"; check_recorded_domains refuses
// a file whose record under `key` is not `expected` (no record passes).
std::map<std::string, std::string> shared_file_metadata(const Config& config);
void check_recorded_domains(const std::string& file, const std::string& key,
                            const std::string& expected);

}  // namespace demix::checkpoint
