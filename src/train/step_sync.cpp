#include "demix/train/step_sync.h"

#include "demix/core/error.h"
#include "demix/model/param_roles.h"
#include "demix/parallel/branch_exchange.h"

namespace demix::train {

namespace {

class LocalSync : public StepSync {
 public:
  explicit LocalSync(std::vector<at::Tensor> params) : params_(std::move(params)) {}
  at::Tensor finish() override { return optim::grad_norm(params_); }

 private:
  std::vector<at::Tensor> params_;
};

class ExpertParallelSync : public StepSync {
 public:
  ExpertParallelSync(const std::vector<std::pair<std::string, at::Tensor>>& trainable,
                     parallel::ProcessGroups& groups, const Config& config,
                     const std::vector<int>& untrained_experts)
      : groups_(groups),
        sync_(trainable, groups, config.dist.bucket_mb * (int64_t(1) << 20), config.dist.overlap,
              untrained_experts) {}
  void before_last_backward(int64_t step) override {
    groups_.report_progress(step);  // this rank reached the gradient sync
    sync_.prepare_for_backward();
  }
  at::Tensor finish() override {
    sync_.sync();
    return sync_.global_norm();
  }
  const parallel::GradSync* grad_sync() const override { return &sync_; }

 private:
  parallel::ProcessGroups& groups_;
  parallel::GradSync sync_;
};

class BranchSync : public StepSync {
 public:
  BranchSync(model::GptImpl& model,
             const std::vector<std::pair<std::string, at::Tensor>>& trainable,
             parallel::ProcessGroups& groups)
      : world_(groups.world()), exchange_(groups.world(), groups.rank()) {
    for (const auto& [name, param] : trainable)
      (model::param_role(name).gate() ? gates_ : stacks_).push_back(param);
    model.set_branch_exchange(&exchange_);
  }
  at::Tensor finish() override {
    // Rank j + 1 holds expert j's gradients alone; the gates' are the same on every rank.
    std::vector<at::Tensor> stacks = {optim::grad_sum_of_squares(stacks_)};
    world_.allreduce(stacks)->wait();
    return (stacks[0] + optim::grad_sum_of_squares(gates_)).sqrt();
  }
  void gather_model(model::GptImpl& model, const optim::AdamW& optimizer) override {
    // Expert j's parameters and AdamW state are current on rank j + 1 only.
    auto tensors = optimizer.state();
    for (auto& item : model.named_parameters()) tensors[item.key()] = item.value();
    at::NoGradGuard no_grad;
    for (auto& [name, t] : tensors) {
      const auto stack = model::param_role(optim::AdamW::parameter_of(name)).stack;
      if (!stack) continue;
      c10d::BroadcastOptions options;
      options.rootRank = int(*stack) + 1;
      std::vector<at::Tensor> buffer = {t};
      world_.broadcast(buffer, options)->wait();
    }
  }
  void exchange(model::GptImpl& model, bool on) override {
    model.set_branch_exchange(on ? &exchange_ : nullptr);
  }

 private:
  c10d::Backend& world_;
  parallel::C10dBranchExchange exchange_;
  std::vector<at::Tensor> gates_, stacks_;  // the trainable parameters, split for the norm
};

}  // namespace

bool branch_parallel(const Config& config, const parallel::ProcessGroups* groups) {
  return groups && config.is_mode() && config.mode.placement == ModePlacement::kBranches;
}

std::unique_ptr<StepSync> make_step_sync(
    const Config& config, model::GptImpl& model,
    const std::vector<std::pair<std::string, at::Tensor>>& trainable,
    parallel::ProcessGroups* groups, const std::vector<int>& untrained_experts) {
  if (branch_parallel(config, groups)) {
    const auto branches = config.data.domains.size() + 1;
    if (size_t(groups->placement().world_size()) != branches)
      throw Error("mode.placement=branches: " + std::to_string(groups->placement().world_size()) +
                  " ranks, expected one per branch: " + std::to_string(branches) +
                  " (backbone + experts)");
    return std::make_unique<BranchSync>(model, trainable, *groups);
  }
  if (groups)
    return std::make_unique<ExpertParallelSync>(trainable, *groups, config, untrained_experts);
  std::vector<at::Tensor> params;
  for (const auto& [name, param] : trainable) params.push_back(param);
  return std::make_unique<LocalSync>(std::move(params));
}

}  // namespace demix::train
