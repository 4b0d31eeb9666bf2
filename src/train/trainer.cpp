#include "demix/train/trainer.h"

#include <chrono>
#include <filesystem>

#include "demix/core/device.h"
#include "demix/core/error.h"
#include "demix/data/corpus.h"
#include "demix/eval/perplexity.h"

namespace demix::train {
namespace fs = std::filesystem;

namespace {

std::string find_resume(const Config& config, const std::string& resume) {
  const bool has_run = fs::exists(fs::path(config.train.out_dir) / "checkpoints" / "latest");
  if (resume == "auto") return has_run ? resolve_checkpoint(config.train.out_dir) : "";
  if (resume.empty() && has_run)
    throw Error(config.train.out_dir +
                ": already holds a run; pass --resume auto to continue it or set train.out_dir");
  return resume.empty() ? "" : resolve_checkpoint(resume);
}

}  // namespace

Trainer::Trainer(Config config, const std::string& resume)
    : config_(std::move(config)),
      device_(resolve_device(config_.train.device)),
      schedule_(config_.optim, config_.train.steps) {
  if (config_.train.threads > 0) at::set_num_threads(int(config_.train.threads));
  const auto checkpoint = find_resume(config_, resume);

  std::vector<const data::TokenFile*> files;
  std::vector<int64_t> domains;
  for (size_t d = 0; d < config_.data.domains.size(); ++d) {
    train_files_.push_back(data::open_split(config_, config_.data.domains[d], "train"));
    valid_files_.push_back(data::open_split(config_, config_.data.domains[d], "valid"));
    files.push_back(train_files_.back().get());
    domains.push_back(int64_t(d));
  }
  batcher_ = std::make_unique<data::DomainBatcher>(
      files, domains, config_.data.sequences_per_domain, config_.model.seq_len,
      data::parse_sampling(config_.data.sampling), config_.data.seed);

  model_ = model::Gpt(model::GptConfig::from(config_), config_.train.seed);
  model_->to(device_);
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : model_->named_parameters()) {
    named.emplace_back(item.key(), item.value());
    params_.push_back(item.value());
  }
  optimizer_ = std::make_unique<AdamW>(named, config_.optim);
  if (!checkpoint.empty()) {
    load_model(checkpoint, *model_);
    load_optimizer(checkpoint, *optimizer_);
    state_ = checkpoint_state(checkpoint);
    spdlog::info("resumed from {} at step {}", checkpoint, state_.step);
  }
  batcher_->set_cursor(state_.data_cursor);

  fs::create_directories(config_.train.out_dir);
  write_file_atomic((fs::path(config_.train.out_dir) / "config.yaml").string(), to_yaml(config_));
  metrics_ =
      std::make_unique<MetricsLog>((fs::path(config_.train.out_dir) / "metrics.jsonl").string());
  spdlog::info("model: {:.2f}M parameters ({:.2f}M shared, {} experts), {} train tokens/step",
               model_->num_params() / 1e6, model_->num_params(false) / 1e6, config_.n_experts(),
               config_.train.grad_accum * config_.data.sequences_per_domain *
                   int64_t(config_.data.domains.size()) * config_.model.seq_len);
}

StepResult Trainer::train_step() {
  model_->train();
  optimizer_->zero_grad();
  const auto E = int64_t(config_.data.domains.size());
  auto loss_sum = torch::zeros({E}, torch::TensorOptions(device_).dtype(torch::kFloat));
  auto rows_seen = torch::zeros({E}, loss_sum.options());
  StepResult result;
  const double micro_scale = 1.0 / double(config_.train.grad_accum);
  for (int64_t micro = 0; micro < config_.train.grad_accum; ++micro) {
    const auto batch = batcher_->next();
    const model::Routing routing(batch.domains, device_);
    const auto inputs = batch.inputs.to(device_), targets = batch.targets.to(device_);
    auto row_loss = -model_->token_logprobs(inputs, targets, routing).mean(1);  // (B)
    (row_loss.mean() * micro_scale).backward();
    loss_sum.index_add_(0, routing.domains(), row_loss.detach());
    rows_seen.index_add_(0, routing.domains(), torch::ones_like(row_loss));
    result.tokens += inputs.numel();
  }
  result.loss = loss_sum.sum() / rows_seen.sum();
  result.domain_loss = loss_sum / rows_seen;
  result.grad_norm = clip_grad_norm(params_, config_.optim.grad_clip);
  result.lr = schedule_.lr_at(state_.step);
  optimizer_->step(result.lr);
  ++state_.step;
  state_.data_cursor = batcher_->cursor();
  return result;
}

std::vector<double> Trainer::validate() {
  model_->eval();
  std::vector<double> losses;
  for (size_t d = 0; d < valid_files_.size(); ++d)
    losses.push_back(eval::score_split(*model_, *valid_files_[d], int64_t(d),
                                       config_.train.eval_tokens, config_.eval.batch_size)
                         .loss());
  model_->train();
  return losses;
}

void Trainer::log_step(const StepResult& r, double seconds) {  // seconds per step
  const double loss = r.loss.item<double>();  // the only host syncs: every log_every steps
  const double norm = r.grad_norm.item<double>();
  const double tokens_per_s = double(r.tokens) / seconds;
  const double eta = seconds * double(config_.train.steps - state_.step);
  spdlog::info("step {:>5}/{} | loss {:.4f} | lr {:.2e} | gnorm {:.3f} | {:.0f} tok/s | eta {}",
               state_.step, config_.train.steps, loss, r.lr, norm, tokens_per_s,
               format_duration(eta));
  JsonObject record;
  record.add("step", state_.step).add("train/loss", loss).add("train/lr", r.lr);
  record.add("train/grad_norm", norm).add("perf/tokens_per_s", tokens_per_s);
  record.add("perf/step_s", seconds);
  const auto domain_loss = r.domain_loss.cpu();
  for (size_t d = 0; d < config_.data.domains.size(); ++d)
    record.add("train/domain/" + config_.data.domains[d] + "/loss",
               domain_loss[int64_t(d)].item<double>());
  metrics_->write(record);
}

std::string Trainer::save_checkpoint() {
  const auto dir = train::save_checkpoint(config_.train.out_dir, *model_, optimizer_.get(), config_,
                                          state_, config_.train.keep_checkpoints);
  spdlog::info("checkpoint {}", dir);
  return dir;
}

void Trainer::run() {
  using clock = std::chrono::steady_clock;
  auto validate_and_log = [&] {
    const auto losses = validate();
    JsonObject record;
    record.add("step", state_.step);
    double mean = 0;
    for (size_t d = 0; d < losses.size(); ++d) {
      record.add("val/domain/" + config_.data.domains[d] + "/loss", losses[d]);
      mean += losses[d] / double(losses.size());
    }
    record.add("val/loss", mean);
    metrics_->write(record);
    spdlog::info("step {:>5} | validation loss {:.4f} (ppl {:.2f}), mean over {} domains",
                 state_.step, mean, std::exp(mean), losses.size());
  };
  if (state_.step >= config_.train.steps) {
    spdlog::info("{}: already trained to step {}", config_.train.out_dir, state_.step);
    return;
  }
  if (state_.step == 0) validate_and_log();
  auto window_start = clock::now();  // step time is averaged over the steps between log lines
  int64_t window_steps = 0;
  while (state_.step < config_.train.steps) {
    const auto result = train_step();
    ++window_steps;
    if (state_.step % config_.train.log_every == 0 || state_.step == config_.train.steps) {
      const auto now = clock::now();
      log_step(result, std::chrono::duration<double>(now - window_start).count() / window_steps);
      window_start = now;
      window_steps = 0;
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
  validate_and_log();
  save_checkpoint();
}

}  // namespace demix::train
