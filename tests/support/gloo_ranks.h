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
#include "demix/parallel/process_groups.h"
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

// What run_ranks can also collect, per rank.
struct RankOutputs {
  std::vector<size_t> overlapped;  // buckets whose all-reduce began in the last backward
  std::vector<std::vector<double>> grad_norms;  // the global gradient norm of each step
  std::vector<Params> optimizer;                // AdamW's state after the last step
};

// Runs `steps` optimizer steps on W ranks (threads); returns every rank's parameters. With
// `checkpoint`, the ranks also write a checkpoint together at the end; `outputs`, if given,
// receives more of each rank's state.
inline std::vector<Params> run_ranks(int W, const Config& config, int steps,
                                     const std::string& resume = "", bool checkpoint = false,
                                     RankOutputs* outputs = nullptr) {
  namespace fs = std::filesystem;
  const auto store_path = fs::temp_directory_path() / ("demix_store_" + std::to_string(::getpid()) +
                                                       "_" + std::to_string(std::rand()));
  auto store = c10::make_intrusive<c10d::FileStore>(store_path.string(), W);
  std::vector<Params> params(static_cast<size_t>(W));
  std::vector<std::string> errors(static_cast<size_t>(W));
  if (outputs)
    *outputs = {std::vector<size_t>(size_t(W)), std::vector<std::vector<double>>(size_t(W)),
                std::vector<Params>(size_t(W))};
  std::vector<std::thread> threads;
  for (int r = 0; r < W; ++r)
    threads.emplace_back([&, r] {
      try {
        parallel::ProcessGroups groups(parallel::Placement(W, int(config.n_experts())), r, store,
                                       "gloo", std::chrono::seconds(60));
        train::Trainer trainer(config, resume, &groups);
        for (int s = 0; s < steps; ++s) {
          const auto result = trainer.train_step();
          if (outputs) outputs->grad_norms[size_t(r)].push_back(result.grad_norm.item<double>());
        }
        if (checkpoint) trainer.save_checkpoint();
        if (outputs) {
          if (trainer.grad_sync())
            outputs->overlapped[size_t(r)] = trainer.grad_sync()->overlapped_buckets();
          for (const auto& [name, t] : trainer.optimizer_state())
            outputs->optimizer[size_t(r)][name] = t.clone();
        }
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
