#include "demix/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "demix/checkpoint/layout.h"
#include "demix/checkpoint/mode_compose.h"
#include "demix/core/autocast.h"
#include "demix/core/device.h"
#include "demix/core/error.h"
#include "demix/core/file.h"
#include "demix/core/json.h"
#include "demix/core/memory_budget.h"
#include "demix/data/corpus.h"
#include "demix/eval/perplexity.h"
#include "demix/ops/execution_policy.h"
#include "demix/train/stop_signal.h"

namespace demix::train {

namespace layout = checkpoint::layout;
namespace fs = std::filesystem;

namespace {

std::string find_resume(const Config& config, const std::string& resume) {
  const bool has_run = fs::exists(layout::checkpoints(config.train.out_dir) / layout::kLatest);
  // Every rank checks every file: all of them read the same directory and pick the same one.
  if (resume == "auto") {
    const auto checkpoint = checkpoint::latest_valid_checkpoint(config.train.out_dir);
    if (checkpoint.empty() && has_run)
      throw Error(config.train.out_dir +
                  ": no checkpoint passes its manifest check (see the "
                  "warnings); move the run away to start again");
    return checkpoint;
  }
  if (resume.empty() && has_run)
    throw Error(config.train.out_dir +
                ": already holds a run; pass --resume auto to continue it or set train.out_dir");
  return resume.empty() ? "" : checkpoint::resolve_checkpoint(resume);
}

}  // namespace

Trainer::Trainer(Config config, const std::string& resume, parallel::ProcessGroups* groups)
    : config_(std::move(config)),
      device_(resolve_device(config_.train.device)),
      groups_(groups),
      placement_(groups ? groups->placement() : parallel::Placement(1, int(config_.n_experts()))),
      rank_(groups ? groups->rank() : 0),
      schedule_(config_.optim, config_.train.steps) {
  const auto execution = ops::apply_execution_policy(config_.train);
  const auto checkpoint = find_resume(config_, resume);
  faults_ = FaultInjection::from_environment(rank_);

  const auto hosted = placement_.experts_on(rank_);
  if (config_.train.trainable == Trainable::kAll && config_.model.lora_rank == 0 &&
      !config_.is_mode()) {
    auto shape = model::GptConfig::from(config_);
    shape.local_experts.assign(hosted.begin(), hosted.end());
    require_memory(uint64_t(shape.parameters_at_least()) * 16, device_,
                   shape.describe_size() + ": fp32 weights, gradients and AdamW moments");
  }
  open_data(hosted);
  build_model(hosted);
  // Parameters and AdamW moments in fp32: the size of this rank's part of a checkpoint, a
  // lower bound for the whole (the ranks usually share one file system).
  uintmax_t checkpoint_bytes = 0;
  for (const auto& [name, t] : optimizer_->state()) checkpoint_bytes += uintmax_t(t.numel()) * 4;
  for (const auto& p : model_->parameters()) checkpoint_bytes += uintmax_t(p.numel()) * 4;
  checkpoint::check_run_dir(config_.train.out_dir, checkpoint_bytes, rank_);
  if (!checkpoint.empty()) {
    checkpoint::load_model(checkpoint, *model_, config_);  // experts by the run's data.domains
    checkpoint::load_optimizer(checkpoint, *optimizer_, config_);
    state_ = checkpoint::checkpoint_state(checkpoint);
    spdlog::info("resumed from {} at step {}", checkpoint, state_.step);
  }
  batcher_->set_cursor(state_.data_cursor);

  const auto counter = torch::zeros({}, torch::TensorOptions(device_).dtype(torch::kFloat));
  skipped_total_ = counter.clone();
  skipped_in_a_row_ = counter.clone();
  worst_in_a_row_ = counter.clone();
  if (rank_ == 0) {
    fs::create_directories(config_.train.out_dir);
    write_file_atomic(layout::run_config(config_.train.out_dir).string(), to_yaml(config_));
    metrics_ =
        std::make_unique<MetricsLog>(layout::metrics(config_.train.out_dir).string(), state_.step);
  }
  if (config_.optim.warmup_steps > config_.train.steps)
    spdlog::info("optim.warmup_steps={} is longer than train.steps={}: warming up over the run",
                 config_.optim.warmup_steps, config_.train.steps);
  if (groups_) spdlog::info("{}", placement_.describe());
  spdlog::info(
      "model on rank {}: {:.2f}M parameters ({:.2f}M shared, {} of {} experts); "
      "{} train tokens/step over {} ranks{}",
      rank_, model_->num_params() / 1e6, model_->num_params(false) / 1e6, hosted.size(),
      config_.n_experts(), global_tokens_per_step(), placement_.world_size(),
      device_.is_cpu() ? std::string("; CPU GEMMs: ") + ops::to_string(execution.cpu_gemm) : "");
  spdlog::info("execution: {}", execution.describe());
  if (const auto* sync = sync_->grad_sync())
    spdlog::info("all-reduce per step on rank {}: {} B shared, {} B expert ({:.2f} MB)", rank_,
                 sync->shared_bytes(), sync->expert_bytes(),
                 double(sync->shared_bytes() + sync->expert_bytes()) / 1e6);
}

std::vector<int64_t> Trainer::drawn_domains(int rank) const {
  // The domains of the experts `rank` hosts (every domain in a dense model), less those outside
  // train.train_domains (adaptation draws the new domain alone).
  const auto hosted = placement_.experts_on(rank);
  std::vector<int64_t> drawn(hosted.begin(), hosted.end());
  if (config_.n_experts() == 0)
    for (int64_t d = 0; d < int64_t(config_.data.domains.size()); ++d) drawn.push_back(d);
  const auto& only = config_.train.train_domains;
  if (!only.empty())
    drawn.erase(std::remove_if(drawn.begin(), drawn.end(),
                               [&](int64_t d) {
                                 return std::find(only.begin(), only.end(),
                                                  config_.data.domains[size_t(d)]) == only.end();
                               }),
                drawn.end());
  return drawn;
}

void Trainer::open_data(const std::vector<int>& hosted) {
  // This rank draws k sequences for each domain it hosts (every domain in a dense model), as
  // replica q of those domains: the domain's rows [q*k, (q+1)*k) of the global batch. A rank
  // hosting none of train.train_domains draws nothing and only joins the gradient sync.
  const auto E = int64_t(config_.data.domains.size());
  const int64_t k = config_.data.sequences_per_domain;
  const auto drawn = drawn_domains(rank_);
  int64_t first_row = hosted.empty() ? 0 : placement_.replica_of(rank_, hosted[0]) * k;
  if (config_.n_experts() == 0) {
    first_row = rank_ * (config_.data.sampling == DataSampling::kNatural ? k * E : k);
    if (branch_parallel(config_, groups_))
      first_row = 0;  // MoDE branches: every rank computes the same batch
  }
  // Rows of the global micro-batch: each rank's loss is its rows' sum over this count, so the
  // summed gradients are those of the global batch's mean loss however unevenly ranks draw.
  global_rows_ = k * int64_t(drawn.size());
  if (groups_ &&
      !branch_parallel(config_, groups_)) {  // MoDE branches: every rank computes the same batch
    global_rows_ = 0;
    for (int r = 0; r < placement_.world_size(); ++r)
      global_rows_ += k * int64_t(drawn_domains(r).size());
  }
  std::vector<const data::TokenSplit*> files;
  for (const auto& domain : config_.data.domains) {
    train_files_.push_back(data::open_split(config_, domain, "train"));
    valid_files_.push_back(data::open_split(config_, domain, "valid"));
    files.push_back(train_files_.back().get());
  }
  batcher_ = std::make_unique<data::DomainBatcher>(
      files, drawn, k, config_.model.seq_len, config_.data.sampling, config_.data.seed, first_row);
}

std::vector<int> Trainer::untrained_experts() const {
  // Experts whose domain no rank draws: one process gives them no gradient, so AdamW must not
  // see a (zero) one here either.
  std::vector<int> out;
  const auto& only = config_.train.train_domains;
  for (int e = 0; e < int(config_.n_experts()); ++e)
    if (!only.empty() &&
        std::find(only.begin(), only.end(), config_.data.domains[size_t(e)]) == only.end())
      out.push_back(e);
  return out;
}

bool Trainer::is_trainable(const std::string& name) const {
  const auto role = model::param_role(name);
  if (config_.is_mode()) {  // the backbone is frozen; gates train, expert stacks unless gates-only
    if (role.backbone()) return false;
    return role.gate() || config_.mode.stage == 1 || config_.mode.train == ModeTrain::kGatesExperts;
  }
  if (config_.model.lora_rank > 0) return role.lora();
  const auto& mode = config_.train.trainable;
  if (mode == Trainable::kAll) return true;
  if (mode == Trainable::kFf) return role.feed_forward();
  if (!role.expert) return false;  // "experts": only those of train_domains
  const auto& domain = config_.data.domains[size_t(*role.expert)];
  const auto& only = config_.train.train_domains;
  return only.empty() || std::find(only.begin(), only.end(), domain) != only.end();
}

void Trainer::build_model(const std::vector<int>& hosted) {
  auto gpt_config = model::GptConfig::from(config_);
  gpt_config.local_experts = std::vector<int64_t>(hosted.begin(), hosted.end());
  model_ = model::Gpt(gpt_config, config_.train.seed);
  if (!config_.train.init_from.empty()) {
    const auto init = checkpoint::resolve_checkpoint(config_.train.init_from);
    if (config_.n_experts() > 0 &&
        checkpoint::checkpoint_config(init).data.domains != config_.data.domains)
      throw Error("train.init_from=" + init + ": its experts (data.domains) differ from the run's");
    // LoRA: the adapters are new, everything else comes from the model they adapt
    checkpoint::load_model(init, *model_,
                           config_.model.lora_rank > 0 ? model::is_backbone_param : nullptr);
  } else if (config_.is_mode()) {  // (init_from a MoDE checkpoint holds the whole model)
    prepare_mode();
  }
  model_->to(device_);
  std::vector<std::pair<std::string, at::Tensor>> named;  // the trainable parameters
  for (auto& item : model_->named_parameters()) {
    if (!is_trainable(item.key())) {
      item.value().set_requires_grad(false);  // frozen: no gradient, no optimizer state
      continue;
    }
    named.emplace_back(item.key(), item.value());
  }
  optimizer_ = std::make_unique<optim::AdamW>(named, config_.optim);
  sync_ = make_step_sync(config_, *model_, named, groups_, untrained_experts());
}

StepResult Trainer::train_step() {
  faults_.before_step(state_.step);
  model_->train();
  optimizer_->zero_grad();
  const auto E = int64_t(config_.data.domains.size());
  auto loss_sum = torch::zeros({E}, torch::TensorOptions(device_).dtype(torch::kFloat));
  auto rows_seen = torch::zeros({E}, loss_sum.options());
  StepResult result;
  // Every row's loss weighs 1 / (rows of the global batch over all micro-batches).
  const double row_scale = 1.0 / double(config_.train.grad_accum * global_rows_);
  for (int64_t micro = 0; micro < config_.train.grad_accum; ++micro) {
    const auto batch = batcher_->next();
    const bool last = micro == config_.train.grad_accum - 1;
    if (last) sync_->before_last_backward(state_.step);
    if (batch.domains.empty()) continue;  // nothing to train here: join the sync only
    const model::Routing routing(batch.domains, device_);
    const auto inputs = to_device(batch.inputs, device_);
    const auto targets = to_device(batch.targets, device_);
    at::Tensor row_loss;
    {
      const Autocast autocast(device_.type(), config_.train.precision == Precision::kBf16);
      row_loss = -model_->token_logprobs(inputs, targets, routing).mean(1);  // (B), fp32
    }
    if (faults_.nan_loss_at(state_.step)) row_loss = row_loss * std::nan("");
    (row_loss.sum() * row_scale).backward();
    loss_sum.index_add_(0, routing.domains(), row_loss.detach());
    rows_seen.index_add_(0, routing.domains(), torch::ones_like(row_loss));
    result.tokens += inputs.numel();
  }
  result.loss_sum = loss_sum;
  result.rows = rows_seen;
  result.loss = loss_sum.sum() / rows_seen.sum().clamp_min(1);
  result.grad_norm = sync_->finish();
  // A NaN or inf anywhere makes the global norm non-finite, the same value on every rank: all
  // ranks skip the update together. Counted on the device; checked at log steps.
  const auto nonfinite = result.grad_norm.isfinite().logical_not().to(torch::kFloat);
  skipped_total_ += nonfinite;
  skipped_in_a_row_ = (skipped_in_a_row_ + 1) * nonfinite;
  worst_in_a_row_ = torch::maximum(worst_in_a_row_, skipped_in_a_row_);
  result.lr = schedule_.lr_at(state_.step);
  optimizer_->step(result.lr, nonfinite,
                   optim::clip_divisor(result.grad_norm, config_.optim.grad_clip));
  ++state_.step;
  state_.data_cursor = batcher_->cursor();
  return result;
}

data::Batch Trainer::peek_batch() const {
  const auto cursor = batcher_->cursor();
  auto batch = batcher_->next();
  batcher_->set_cursor(cursor);
  return batch;
}

void Trainer::prepare_mode() {
  const auto& mode = config_.mode;
  if (mode.stage == 2) return checkpoint::compose_experts(config_, *model_);
  const auto backbone = checkpoint::resolve_checkpoint(mode.backbone);
  const auto backbone_config = checkpoint::checkpoint_config(backbone);
  if (backbone_config.model.ff != FeedForward::kDense || backbone_config.is_mode() ||
      backbone_config.model.lora_rank > 0)
    throw Error("mode.backbone=" + backbone + ": expected a DENSE model (model.ff=dense)");
  checkpoint::load_model(backbone, *model_, model::is_backbone_param);
  if (mode.expert_init == ExpertInit::kBackbone) checkpoint::init_experts_from_backbone(*model_);
}

std::vector<double> Trainer::validate() {
  sync_->gather_model(*model_, *optimizer_);  // rank 0 validates the whole model alone
  sync_->exchange(*model_, false);
  model_->eval();
  // Each domain is scored once: by its expert's leader (rank 0 in a dense model).
  auto losses = at::zeros({int64_t(valid_files_.size())}, at::kDouble);
  for (size_t d = 0; d < valid_files_.size(); ++d) {
    const bool mine = config_.n_experts() > 0 ? placement_.leader_of(int(d)) == rank_ : rank_ == 0;
    if (mine)
      losses[int64_t(d)] = eval::score_split(*model_, *valid_files_[d], int64_t(d),
                                             config_.train.eval_tokens, config_.eval.batch_size)
                               .loss();
  }
  if (groups_) all_reduce_sum(losses);
  model_->train();
  sync_->exchange(*model_, true);
  return std::vector<double>(losses.data_ptr<double>(), losses.data_ptr<double>() + losses.numel());
}

void Trainer::all_reduce_sum(at::Tensor& tensor) {
  auto on_device = tensor.to(device_);
  std::vector<at::Tensor> tensors = {on_device};
  groups_->world().allreduce(tensors)->wait();
  tensor.copy_(on_device);
}

void Trainer::log_step(const StepResult& r, double seconds, double eta) {
  // Per-domain losses over the global batch: every rank joins, rank 0 writes.
  auto sums = at::cat({r.loss_sum, r.rows}).to(at::kCPU, at::kDouble);
  if (groups_) all_reduce_sum(sums);
  if (rank_ != 0) return;
  const auto E = r.rows.numel();
  const auto domain_loss = sums.narrow(0, 0, E) / sums.narrow(0, E, E);
  const double loss = (sums.narrow(0, 0, E).sum() / sums.narrow(0, E, E).sum()).item<double>();
  const double norm = r.grad_norm.item<double>();  // the only host syncs: every log_every steps
  const double tokens_per_s = double(global_tokens_per_step()) / seconds;
  spdlog::info("step {:>5}/{} | loss {:.4f} | lr {:.2e} | gnorm {:.3f} | {:.0f} tok/s | eta {}",
               state_.step, config_.train.steps, loss, r.lr, norm, tokens_per_s,
               format_duration(eta));
  Json record = {{"step", state_.step},
                 {"train/loss", loss},
                 {"train/lr", r.lr},
                 {"train/grad_norm", norm},
                 {"perf/tokens_per_s", tokens_per_s},
                 {"train/skipped_steps", skipped_total_.item<double>()},
                 {"perf/step_s", seconds}};
  if (const auto* sync = sync_->grad_sync()) {
    record["perf/comm_exposed_s"] = sync->last_sync_seconds();
    record["perf/overlapped_buckets"] = int64_t(sync->overlapped_buckets());
  }
  for (size_t d = 0; d < config_.data.domains.size(); ++d)
    record["train/domain/" + config_.data.domains[d] + "/loss"] =
        domain_loss[int64_t(d)].item<double>();
  metrics_->write(record);
}

void Trainer::check_nonfinite() {
  const auto worst = worst_in_a_row_.item<double>();
  worst_in_a_row_.zero_();
  if (worst == 0) return;
  const auto& t = config_.train;
  const int64_t limit = t.nonfinite == NonFinite::kStop ? 1 : t.nonfinite_limit;
  spdlog::warn(
      "step {}: {:.0f} steps skipped so far for a non-finite gradient norm, {:.0f} in a row",
      state_.step, skipped_total_.item<double>(), worst);
  if (limit > 0 && worst >= double(limit))
    throw Error("step " + std::to_string(state_.step) + ": non-finite gradient norm in " +
                std::to_string(int64_t(worst)) +
                " steps in a row (train.nonfinite=" + to_string(t.nonfinite) +
                ", train.nonfinite_limit=" + std::to_string(t.nonfinite_limit) +
                "); resume from the last checkpoint with a lower optim.lr");
}

std::string Trainer::save_checkpoint(bool with_optimizer) {
  sync_->gather_model(*model_, *optimizer_);
  const auto dir = checkpoint::save_checkpoint(
      config_.train.out_dir, *model_, with_optimizer ? optimizer_.get() : nullptr, config_, state_,
      config_.train.keep_checkpoints, groups_, [&] { faults_.during_checkpoint(state_.step); });
  spdlog::info("checkpoint {}", dir);
  return dir;
}

bool Trainer::stop_requested() {
  auto signal = at::full({1}, double(StopSignal::received()), at::kDouble);
  if (groups_) {  // every rank stops after the same step: the first to see a signal decides
    auto on_device = signal.to(device_);
    std::vector<at::Tensor> tensors = {on_device};
    groups_->world().allreduce(tensors, {c10d::ReduceOp::MAX})->wait();
    signal = on_device.cpu();
  }
  stop_signal_ = int(signal.item<double>());
  return stop_signal_ != 0;
}

int Trainer::run() {
  using clock = std::chrono::steady_clock;
  const StopSignal stop_signal;
  auto validate_and_log = [&] {
    const auto losses = validate();
    Json record = {{"step", state_.step}};
    double mean = 0;
    for (size_t d = 0; d < losses.size(); ++d) {
      record["val/domain/" + config_.data.domains[d] + "/loss"] = losses[d];
      mean += losses[d] / double(losses.size());
    }
    record["val/loss"] = mean;
    if (metrics_) metrics_->write(record);
    spdlog::info("step {:>5} | validation loss {:.4f} (ppl {:.2f}), mean over {} domains",
                 state_.step, mean, std::exp(mean), losses.size());
  };
  if (state_.step >= config_.train.steps) {
    spdlog::info("{}: already trained to step {}", config_.train.out_dir, state_.step);
    return 0;
  }
  if (state_.step == 0) validate_and_log();
  // Step time: the tokens/s of a log line average the steps since the previous line; the ETA
  // uses every step this process has trained, evaluation and checkpoints left out.
  auto window_start = clock::now();
  int64_t window_steps = 0, trained_steps = 0;
  double trained_seconds = 0;
  try {
    while (state_.step < config_.train.steps) {
      const auto result = train_step();
      ++window_steps;
      if (state_.step % config_.train.log_every == 0 || state_.step == config_.train.steps) {
        check_nonfinite();
        const double seconds = std::chrono::duration<double>(clock::now() - window_start).count();
        trained_seconds += seconds;
        trained_steps += window_steps;
        const double eta =
            trained_seconds / double(trained_steps) * double(config_.train.steps - state_.step);
        log_step(result, seconds / double(window_steps), eta);
        window_start = clock::now();
        window_steps = 0;
      }
      if (stop_requested()) {
        spdlog::warn("step {}: stopping on signal {}; writing a checkpoint", state_.step,
                     stop_signal_);
        save_checkpoint();
        spdlog::warn("stopped at step {}/{}: continue with --resume auto", state_.step,
                     config_.train.steps);
        return stop_signal_;
      }
      const bool last = state_.step == config_.train.steps;
      const auto every = [&](int64_t n) { return n > 0 && state_.step % n == 0 && !last; };
      if (every(config_.train.eval_every)) validate_and_log();
      if (every(config_.train.checkpoint_every)) save_checkpoint();
      if (every(config_.train.eval_every) || every(config_.train.checkpoint_every)) {
        window_start = clock::now();  // keep evaluation and I/O out of the step time
        window_steps = 0;
      }
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {  // e.g. a collective timed out: name who we waited for
    if (!groups_) throw;
    const auto* c10 = dynamic_cast<const c10::Error*>(&e);
    const std::string what = c10 ? c10->what_without_backtrace() : e.what();
    throw Error("rank " + std::to_string(rank_) + ": step " + std::to_string(state_.step) +
                " failed (" + what.substr(0, what.find('\n')) + "); " +
                groups_->describe_progress(state_.step));
  }
  validate_and_log();
  save_checkpoint();
  return 0;
}

}  // namespace demix::train
