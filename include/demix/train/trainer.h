#pragma once

// The training loop: builds the model, optimizer and data stream from one Config, then runs one
// recipe per step: micro-batches (forward, backward), the step's gradient sync (step_sync.h: one
// process, expert-parallel ranks or MoDE branches), clip, schedule, AdamW, log.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "demix/checkpoint/checkpoint.h"
#include "demix/core/config.h"
#include "demix/data/domain_batcher.h"
#include "demix/model/gpt.h"
#include "demix/optim/lr_schedule.h"
#include "demix/optim/optimizer.h"
#include "demix/parallel/placement.h"
#include "demix/parallel/process_groups.h"
#include "demix/train/fault_injection.h"
#include "demix/train/metrics.h"
#include "demix/train/step_sync.h"

namespace demix::train {

struct StepResult {
  at::Tensor loss;       // 0-dim, mean over this rank's tokens in the step
  at::Tensor loss_sum;   // (E) sum of row losses per domain on this rank
  at::Tensor rows;       // (E) rows per domain on this rank
  at::Tensor grad_norm;  // 0-dim, of the whole model's gradient, before clipping
  double lr = 0;
  int64_t tokens = 0;
};

class Trainer {
 public:
  // `resume`: a checkpoint or run directory to continue from; "auto" resumes from the run's own
  // latest checkpoint if there is one; "" starts fresh and refuses a directory that holds a run.
  // With `groups`, this is one rank of an expert-parallel run (see parallel/placement.h).
  explicit Trainer(Config config, const std::string& resume = "",
                   parallel::ProcessGroups* groups = nullptr);

  // Trains to train.steps, validates and checkpoints at the end; returns 0. On SIGINT/SIGTERM
  // (train/stop_signal.h) it checkpoints after the current step and returns the signal.
  int run();
  StepResult train_step();
  data::Batch peek_batch() const;  // the batch the next step will draw (the stream is unchanged)
  std::vector<double> validate();  // valid loss per training domain (all ranks join)
  int64_t skipped_steps() const { return int64_t(skipped_total_.item<double>()); }
  // Returns the checkpoint directory; without the optimizer: the weights alone (a reference run).
  std::string save_checkpoint(bool with_optimizer = true);

  model::GptImpl& model() { return *model_; }
  std::map<std::string, at::Tensor> optimizer_state() const { return optimizer_->state(); }
  const checkpoint::TrainState& state() const { return state_; }
  // The expert-parallel all-reduce; nullptr in one process and for MoDE branches.
  const parallel::GradSync* grad_sync() const { return sync_->grad_sync(); }

 private:
  void open_data(const std::vector<int>& hosted);          // token files and this rank's stream
  std::vector<int64_t> drawn_domains(int rank) const;      // the domains `rank` draws rows of
  std::vector<int> untrained_experts() const;              // experts outside train.train_domains
  void build_model(const std::vector<int>& hosted);        // model, optimizer, gradient sync
  bool is_trainable(const std::string& param_name) const;  // train.trainable
  void log_step(const StepResult& result, double seconds_per_step, double eta_seconds);
  bool stop_requested();  // a signal reached any rank (a collective under a launch)
  int64_t global_tokens_per_step() const {  // over all ranks (MoDE branches share one batch)
    return config_.train.grad_accum * global_rows_ * config_.model.seq_len;
  }
  void check_nonfinite();  // a host sync: at log steps only; throws past train.nonfinite_limit
  void all_reduce_sum(at::Tensor& tensor);  // over the world group
  void prepare_mode();                      // MoDE: backbone, expert initialisation, composition

  Config config_;
  torch::Device device_;
  parallel::ProcessGroups* groups_;  // nullptr: a single process
  parallel::Placement placement_;
  int rank_;
  FaultInjection faults_;
  at::Tensor skipped_total_, skipped_in_a_row_, worst_in_a_row_;  // non-finite steps (device)
  model::Gpt model_{nullptr};
  std::unique_ptr<optim::AdamW> optimizer_;
  std::unique_ptr<StepSync> sync_;  // one process, expert-parallel ranks or MoDE branches
  optim::LrSchedule schedule_;
  std::vector<std::unique_ptr<data::TokenSplit>> train_files_;
  std::vector<std::unique_ptr<data::TokenSplit>> valid_files_;
  std::unique_ptr<data::DomainBatcher> batcher_;
  int64_t global_rows_ = 0;  // rows per micro-batch over all ranks
  std::unique_ptr<MetricsLog> metrics_;
  checkpoint::TrainState state_;
  int stop_signal_ = 0;
};

}  // namespace demix::train
