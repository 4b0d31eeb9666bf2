#include "demix/bench/bench.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "demix/core/autocast.h"
#include "demix/core/device.h"
#include "demix/core/error.h"
#include "demix/core/file.h"
#include "demix/core/host_memory.h"
#include "demix/core/json.h"
#include "demix/core/safetensors.h"
#include "demix/data/corpus.h"
#include "demix/eval/mixture.h"
#include "demix/ops/execution_policy.h"
#include "demix/train/trainer.h"

namespace demix::bench {
namespace fs = std::filesystem;

namespace {

void synchronize(const std::string& device) {
  if (device.rfind("cuda", 0) == 0) torch::cuda::synchronize();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

template <class F>
double median_seconds(int64_t warmup, int64_t reps, const std::string& device, F&& f) {
  std::vector<double> times;
  for (int64_t i = 0; i < warmup + reps; ++i) {
    synchronize(device);
    const auto start = std::chrono::steady_clock::now();
    f();
    synchronize(device);
    const auto seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (i >= warmup) times.push_back(seconds);
  }
  return median(times);
}

// Parameters one token goes through: every shared one except the position table (a lookup) and
// one expert per DEMix layer. The tied embedding counts once, as the output projection.
double active_parameters(model::GptImpl& model, int64_t n_experts) {
  double shared = 0, expert = 0;
  for (const auto& item : model.named_parameters()) {
    if (item.key().rfind("wpe.", 0) == 0) continue;
    (model::expert_of(item.key()) ? expert : shared) += double(item.value().numel());
  }
  return shared + (n_experts > 0 ? expert / double(n_experts) : 0.0);
}

std::string fmt(const char* format, double value) {
  char cell[64];
  std::snprintf(cell, sizeof(cell), format, value);
  return cell;
}

// Profiles `steps` training steps and returns, as Markdown, the host ops by self time (an op's
// duration less that of the ops nested in it on the same thread) and, on a GPU, the kernels by
// device time with the share of the steps' wall time the GPU was idle (launch-bound when high).
std::string profile_steps(train::Trainer& trainer, int64_t steps, const std::string& device,
                          const std::string& trace) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  const bool cuda = resolve_device(device).is_cuda();
  std::set<ActivityType> activities = {ActivityType::CPU};
  if (cuda) activities.insert(ActivityType::CUDA);
  // Input shapes in the trace: which GEMMs of a step are slow shows only per shape.
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO,
                                                     /*report_input_shapes=*/true);
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) trainer.train_step();
  synchronize(device);
  const double wall_ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  const auto result = prof::disableProfiler();
  result->save(trace);

  struct Span {
    uint64_t start, end, thread;
    std::string name;
  };
  std::vector<Span> spans;
  std::map<std::string, std::pair<double, int64_t>> kernels;  // name -> (ns, calls)
  double kernel_ns = 0;
  for (const auto& e : result->events()) {
    if (e.deviceType() == c10::DeviceType::CPU) {
      spans.push_back({e.startNs(), e.endNs(), e.startThreadId(), e.name()});
    } else {
      kernels[e.name().substr(0, 90)].first += double(e.durationNs());
      kernels[e.name().substr(0, 90)].second += 1;
      kernel_ns += double(e.durationNs());
    }
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return std::tie(a.thread, a.start, b.end) < std::tie(b.thread, b.start, a.end);
  });
  std::map<std::string, std::pair<double, int64_t>> self;  // name -> (ns, calls)
  std::vector<const Span*> open;
  double total = 0;
  for (const auto& s : spans) {
    while (!open.empty() && (open.back()->thread != s.thread || open.back()->end <= s.start))
      open.pop_back();
    const double ns = double(s.end - s.start);
    if (open.empty())
      total += ns;  // top level: the wall time covered
    else
      self[open.back()->name].first -= ns;
    self[s.name].first += ns;
    self[s.name].second += 1;
    open.push_back(&s);
  }
  auto ranked_table = [&](const std::map<std::string, std::pair<double, int64_t>>& by_name,
                          const std::string& what, double share_of) {
    std::vector<std::pair<std::string, std::pair<double, int64_t>>> ranked(by_name.begin(),
                                                                           by_name.end());
    std::sort(ranked.begin(), ranked.end(),
              [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
    std::string table = "| " + what + " | calls/step | ms/step | share |\n|---|---:|---:|---:|\n";
    for (size_t i = 0; i < std::min<size_t>(20, ranked.size()); ++i) {
      const auto& [name, stat] = ranked[i];
      table += "| " + name + " | " + std::to_string(stat.second / steps) + " | " +
               fmt("%.2f", stat.first / 1e6 / double(steps)) + " | " +
               fmt("%.1f%%", 100 * stat.first / share_of) + " |\n";
    }
    return table;
  };
  // Ops on worker threads (the CPU's parallel experts) are top level there too: their sum can
  // exceed the wall time, so both are printed.
  std::set<uint64_t> threads;
  for (const auto& s : spans) threads.insert(s.thread);
  std::string out = ranked_table(self, "host op (self time)", total) + "\n" +
                    fmt("%.1f", total / 1e6 / double(steps)) + " ms/step in top-level ops over " +
                    std::to_string(threads.size()) + " thread(s), " +
                    fmt("%.1f", wall_ns / 1e6 / double(steps)) + " ms/step wall; trace: " + trace +
                    "\n";
  if (cuda)
    out += "\n" + ranked_table(kernels, "GPU kernel", kernel_ns) + "\nGPU busy " +
           fmt("%.1f", kernel_ns / 1e6 / double(steps)) + " ms/step of " +
           fmt("%.1f", wall_ns / 1e6 / double(steps)) + " ms/step wall (" +
           fmt("%.1f%%", 100 * (1 - kernel_ns / wall_ns)) + " idle)\n";
  return out;
}

}  // namespace

double gemm_flops_per_s(at::ScalarType dtype, const std::string& device, int64_t n,
                        ops::CpuGemm library) {
  const auto options = at::TensorOptions().dtype(dtype).device(resolve_device(device));
  const auto a = at::randn({n, n}, options), b = at::randn({n, n}, options);
  auto c = at::empty({n, n}, options);
  auto policy = ops::execution_policy();
  policy.cpu_gemm = library;
  const ops::ScopedExecutionPolicy use(policy);
  const double seconds = median_seconds(1, 5, device, [&] { ops::gemm_out(c, a, b); });
  return 2.0 * double(n) * double(n) * double(n) / seconds;
}

std::string run_bench(Config config, const BenchOptions& options) {
  const auto& device = config.train.device;
  const auto compute_device = resolve_device(device);
  fs::create_directories(options.out);
  config.train.out_dir = options.out + "/run";
  // Rounds after the first re-warm with one step (the reference's process ran in between).
  constexpr int64_t kRewarmSteps = 1;
  config.train.steps =
      options.warmup + options.steps + (options.rounds - 1) * (kRewarmSteps + options.steps);
  config.optim.warmup_steps = std::min(config.optim.warmup_steps, config.train.steps);
  config.train.eval_every = 0;
  config.train.checkpoint_every = 0;
  fs::remove_all(config.train.out_dir);
  const auto cpu_gemm = ops::apply_execution_policy(config.train).cpu_gemm;
  const int threads = at::get_num_threads();

  // MFU against the peak of the dtype the matmuls run in, measured before and after the training
  // steps and the higher kept: on a shared machine one measurement can land in a neighbour's burst
  // (the peak has read half of itself), which would inflate the MFU. On a CPU in fp32
  // the peak is the higher of ATen's (MKL) and OpenBLAS's where it loads, whichever runs ours.
  const bool bf16 = config.train.precision == Precision::kBf16;
  const auto gemm_dtype = bf16 ? at::kBFloat16 : at::kFloat;
  // A GPU needs a larger product than a CPU to reach its peak.
  const int64_t gemm_n = compute_device.is_cuda() ? 8192 : 2048;
  std::map<ops::CpuGemm, double> peaks;  // per library
  std::vector<ops::CpuGemm> libraries = {ops::CpuGemm::kAten};
  if (compute_device.is_cpu() && !bf16 && ops::openblas_available())
    libraries.push_back(ops::CpuGemm::kOpenBlas);
  auto measure_peaks = [&] {
    spdlog::info("bench: measuring the {} GEMM peak", bf16 ? "bf16" : "fp32");
    for (const auto library : libraries)
      peaks[library] =
          std::max(peaks[library], gemm_flops_per_s(gemm_dtype, device, gemm_n, library));
  };
  measure_peaks();
  reset_peak_device_memory(compute_device);
  train::Trainer trainer(config);
  auto& model = trainer.model();
  const int64_t E = config.n_experts();

  // The first batch and the initial weights, for the reference's loss check.
  const auto batch = trainer.peek_batch();
  double initial_loss = 0;
  {
    at::NoGradGuard no_grad;
    const Autocast autocast(compute_device.type(), bf16);
    const model::Routing routing(batch.domains, compute_device);
    initial_loss =
        model.loss(batch.inputs.to(compute_device), batch.targets.to(compute_device), routing)
            .item<double>();
  }
  const auto checkpoint = trainer.save_checkpoint(/*with_optimizer=*/false);  // 3x less to write
  save_safetensors(options.out + "/batch.safetensors",
                   {{"inputs", batch.inputs},
                    {"targets", batch.targets},
                    {"domains", at::tensor(batch.domains, at::kLong)}});

  // The reference, once per round: its step time per variant (eager, compile).
  std::map<std::string, double> reference_peak_mb;  // GPU: each variant's peak device memory
  auto run_reference = [&](int64_t round) {
    const auto json = options.out + "/reference.json";
    // DEMIX_PYTHON: a Python with torch other than the project's venv (a cluster's module).
    const char* python = std::getenv("DEMIX_PYTHON");
    std::ostringstream command;
    command << "GLIBC_TUNABLES=" << kKeepFreedHostMemoryTunables << " "
            << (python ? python : ".venv/bin/python") << " scripts/bench/reference.py "
            << checkpoint << " " << options.out << "/batch.safetensors --device " << device
            << " --expected-loss " << fmt("%.9g", initial_loss) << " --steps " << options.steps
            << " --warmup " << options.warmup << " --threads " << threads << " --json " << json
            << (options.compile ? "" : " --no-compile") << " --profile "
            << (round == 0 ? options.profile_steps : 0) << (bf16 ? " --bf16" : "");
    spdlog::info("bench: {}", command.str());
    release_cached_device_memory(compute_device);  // the reference shares the GPU
    if (std::system(command.str().c_str()) != 0)
      throw Error("bench: the PyTorch reference failed (its loss check or run): " + command.str());
    const auto reference = read_json_file(json, "benchmark reference report");
    std::map<std::string, double> step_s;
    try {
      for (const char* variant : {"eager", "compile"})
        if (const auto run = reference.find(variant); run != reference.end()) {
          step_s[variant] = run->at("step_s").get<double>();
          if (run->contains("peak_device_mb"))
            reference_peak_mb[variant] = run->at("peak_device_mb").get<double>();
        }
    } catch (const nlohmann::json::exception& e) {
      throw Error(json + ": unreadable benchmark reference report: " + json_message(e));
    }
    return step_s;
  };

  // Rounds alternate our timed steps and the reference's, so that a slow spell of a shared
  // machine lands on both sides; each side reports the median of its per-round medians.
  int64_t tokens_per_step = 0;
  std::vector<double> ours_rounds;
  std::map<std::string, std::vector<double>> reference_rounds;
  for (int64_t round = 0; round < options.rounds; ++round) {
    const int64_t warmup = round == 0 ? options.warmup : kRewarmSteps;
    spdlog::info("bench: round {}/{}: {} warm-up and {} timed training steps", round + 1,
                 options.rounds, warmup, options.steps);
    ours_rounds.push_back(median_seconds(warmup, options.steps, device,
                                         [&] { tokens_per_step = trainer.train_step().tokens; }));
    if (options.reference)
      for (const auto& [variant, step_s] : run_reference(round))
        reference_rounds[variant].push_back(step_s);
  }
  const double step_s = median(ours_rounds);
  const double peak_device_mb =  // training's, before the second GEMM's buffers
      double(peak_device_memory_bytes(compute_device)) / 1048576.0;
  const double tokens_per_s = double(tokens_per_step) / step_s;
  measure_peaks();
  double peak = 0;
  for (const auto& [library, flops] : peaks) peak = std::max(peak, flops);
  const double active = active_parameters(model, E);
  const auto& m = config.model;
  const double flops_per_token =
      6.0 * active + 12.0 * double(m.n_layer * m.seq_len * m.d_model);  // + attention
  const double mfu = flops_per_token * tokens_per_s / peak;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double peak_rss_mb = double(usage.ru_maxrss) / 1024.0;

  // Evaluation: known-domain top-1, every expert mixed, and top-2 mixing.
  const auto file = data::open_split(config, config.data.domains[0], "valid");
  const auto windows = data::eval_windows(*file, m.seq_len, options.eval_tokens);
  const double eval_tokens = double(windows.inputs.numel());
  std::vector<std::pair<std::string, double>> eval_rates;
  auto time_eval = [&](const std::string& name, const std::vector<double>& probs, int64_t top_k) {
    const double s = median_seconds(1, 3, device, [&] {
      auto prior = eval::Prior::fixed(probs);
      eval::score_mixture(model, windows, prior, {eval::PosteriorKind::kPrefix, top_k, 16});
    });
    eval_rates.emplace_back(name, eval_tokens / s);
  };
  if (E > 0) {
    std::vector<double> one_hot(size_t(E), 0.0);
    one_hot[0] = 1.0;
    time_eval("eval top-1", one_hot, 1);
    time_eval("eval mixing, all " + std::to_string(E) + " experts",
              std::vector<double>(size_t(E), 1.0), 0);
    if (E > 2) time_eval("eval mixing, top-2", std::vector<double>(size_t(E), 1.0), 2);
  }

  Json ours = {{"step_s", step_s}, {"tokens_per_s", tokens_per_s}, {"mfu", mfu}};
  if (peak_device_mb > 0) ours["peak_device_mb"] = peak_device_mb;
  Json report = {{"device", device},
                 {"threads", threads},
                 {"precision", to_string(config.train.precision)},
                 {"fused_cuda_kernels", config.train.fused_cuda_kernels},
                 {"gemm_flops_per_s", peak},
                 {"cpu_gemm", ops::to_string(cpu_gemm)},
                 {"parameters", int64_t(model.num_params())},
                 {"active_parameters", active},
                 {"flops_per_token", flops_per_token},
                 {"tokens_per_step", tokens_per_step},
                 {"initial_loss", initial_loss},
                 {"peak_rss_mb", peak_rss_mb},
                 {"demix", ours}};
  for (const auto& [name, rate] : eval_rates) report[name + " tokens_per_s"] = rate;

  std::string table =
      "| training | tokens/s | step ms (median) | MFU | demix speed / this "
      "|\n|---|---:|---:|---:|---:|\n";
  auto row = [&](const std::string& name, double s) {
    const double rate = double(tokens_per_step) / s;
    table += "| " + name + " | " + fmt("%.0f", rate) + " | " + fmt("%.1f", s * 1e3) + " | " +
             fmt("%.1f%%", 100 * flops_per_token * rate / peak) + " | " + fmt("%.2fx", s / step_s) +
             " |\n";
  };
  row("demix (C++)", step_s);
  report["rounds"] = options.rounds;
  report["demix_step_s_rounds"] = ours_rounds;
  for (const std::string variant : {"eager", "compile"}) {
    if (!reference_rounds.count(variant)) continue;
    const auto& rounds = reference_rounds[variant];
    row("PyTorch " + variant, median(rounds));
    report["reference_" + variant + "_step_s"] = median(rounds);
    report["reference_" + variant + "_step_s_rounds"] = rounds;
    if (reference_peak_mb.count(variant))
      report["reference_" + variant + "_peak_device_mb"] = reference_peak_mb[variant];
  }
  if (options.profile_steps > 0) {
    spdlog::info("bench: profiling {} training steps", options.profile_steps);
    const auto profile =
        profile_steps(trainer, options.profile_steps, device, options.out + "/profile.trace.json");
    write_file_atomic(options.out + "/profile.md", profile);
    table += "\nProfile (self time per op, demix C++):\n\n" + profile;
  }
  table += "\n| evaluation | tokens/s |\n|---|---:|\n";
  for (const auto& [name, rate] : eval_rates)
    table += "| " + name + " | " + fmt("%.0f", rate) + " |\n";
  std::string per_library;
  for (const auto& [library, flops] : peaks) {
    report[std::string(ops::to_string(library)) + "_gemm_flops_per_s"] = flops;
    if (peaks.size() > 1)
      per_library += std::string(per_library.empty() ? ": " : ", ") + ops::to_string(library) +
                     " " + fmt("%.1f", flops / 1e9);
  }
  table +=
      "\n" + fmt("%.1f", peak / 1e9) + " GFLOP/s " + to_string(config.train.precision) +
      " GEMM peak (" + std::to_string(gemm_n) + "^3, measured" + per_library + ") on " + device +
      (compute_device.is_cpu() ? std::string(", ours through ") + ops::to_string(cpu_gemm)
                               : std::string()) +
      ", " + std::to_string(threads) + " threads; " + fmt("%.2f", active / 1e6) +
      "M active parameters, " + fmt("%.1f", flops_per_token / 1e6) + " MFLOP/token; peak RSS " +
      fmt("%.0f", peak_rss_mb) + " MB; initial loss " + fmt("%.6f", initial_loss) + "\n";
  if (peak_device_mb > 0) {
    table += "Peak device memory (allocated): demix " + fmt("%.0f", peak_device_mb) + " MB";
    for (const auto& [variant, mb] : reference_peak_mb)
      table += ", PyTorch " + variant + " " + fmt("%.0f", mb) + " MB";
    table += "\n";
  }
  write_json_file(options.out + "/bench.json", report);
  write_file_atomic(options.out + "/bench.md", table);
  return table;
}

}  // namespace demix::bench
