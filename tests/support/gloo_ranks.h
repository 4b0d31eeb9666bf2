#pragma once

// Ranks as threads of one process, on Gloo over a FileStore: what the distributed tests run a
// Trainer on, to compare it against a single process.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <vector>

#include "demix/core/config.h"
#include "demix/dist/process_groups.h"
#include "demix/train/trainer.h"
#include "support/tensor_compare.h"

namespace demix::test_support {

using Params = std::map<std::string, at::Tensor>;

inline Params snapshot(train::Trainer& t) {
  Params out;
  for (const auto& item : t.model().named_parameters())
    out[item.key()] = item.value().detach().clone();
  return out;
}

// Runs `steps` optimizer steps on W ranks (threads); returns every rank's parameters. With
// `checkpoint`, the ranks also write a checkpoint together at the end; `overlapped` receives each
// rank's count of buckets whose all-reduce started during the last backward.
inline std::vector<Params> run_ranks(int W, const Config& config, int steps,
                                     const std::string& resume = "", bool checkpoint = false,
                                     std::vector<size_t>* overlapped = nullptr) {
  namespace fs = std::filesystem;
  const auto store_path = fs::temp_directory_path() / ("demix_store_" + std::to_string(::getpid()) +
                                                       "_" + std::to_string(std::rand()));
  auto store = c10::make_intrusive<c10d::FileStore>(store_path.string(), W);
  std::vector<Params> params(static_cast<size_t>(W));
  std::vector<std::string> errors(static_cast<size_t>(W));
  std::vector<std::thread> threads;
  for (int r = 0; r < W; ++r)
    threads.emplace_back([&, r] {
      try {
        dist::ProcessGroups groups(dist::Placement(W, int(config.n_experts())), r, store, "gloo",
                                   std::chrono::seconds(60));
        train::Trainer trainer(config, resume, &groups);
        for (int s = 0; s < steps; ++s) trainer.train_step();
        if (checkpoint) trainer.save_checkpoint();
        if (overlapped) (*overlapped)[size_t(r)] = trainer.grad_sync()->overlapped_buckets();
        params[size_t(r)] = snapshot(trainer);
        groups.barrier();
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < W; ++r) EXPECT_EQ(errors[size_t(r)], "") << "rank " << r;
  fs::remove(store_path);
  return params;
}

}  // namespace demix::test_support
