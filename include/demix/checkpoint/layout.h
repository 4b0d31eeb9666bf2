#pragma once

// Every path and file name of a run directory and of a checkpoint (docs/checkpoints.md), in one
// place. Paths inside a checkpoint are relative strings, as the manifest records them.
//
//   <run>/config.yaml, <run>/metrics.jsonl
//   <run>/checkpoints/latest                     names the newest step directory
//   <run>/checkpoints/step_00000600/             written as step_00000600.tmp/, then renamed
//     shared.safetensors, experts/<domain>.safetensors
//     optimizer/shared.safetensors, optimizer/experts/<domain>.safetensors
//     meta.json, config.yaml, manifest.json (written last)

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace demix::checkpoint::layout {

// A run directory.
inline std::filesystem::path run_config(const std::filesystem::path& run) {
  return run / "config.yaml";
}
inline std::filesystem::path metrics(const std::filesystem::path& run) {
  return run / "metrics.jsonl";
}
inline std::filesystem::path checkpoints(const std::filesystem::path& run) {
  return run / "checkpoints";
}
// In checkpoints(run): the file naming the newest checkpoint, and the directory names.
inline const char* const kLatest = "latest";
inline std::string step_directory(int64_t step) {  // step_00000600
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08lld", static_cast<long long>(step));
  return name;
}
inline const char* const kIncomplete = ".tmp";  // suffix of a checkpoint being written

// Inside a checkpoint.
inline const char* const kShared = "shared.safetensors";
inline const char* const kMeta = "meta.json";
inline const char* const kConfig = "config.yaml";
inline const char* const kExperts = "experts";
inline const char* const kOptimizer = "optimizer";
inline std::string expert_file(const std::string& domain) {
  return std::string(kExperts) + "/" + domain + ".safetensors";
}
// The optimizer's copy of a parameter file: optimizer/shared.safetensors, optimizer/experts/...
inline std::string optimizer_file(const std::string& parameter_file) {
  return std::string(kOptimizer) + "/" + parameter_file;
}

// The optimizer's tensors in those files are named as optim::AdamW::state() names them.

}  // namespace demix::checkpoint::layout
