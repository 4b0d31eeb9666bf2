#include "demix/generate/sampler.h"

#include <ATen/CPUGeneratorImpl.h>

namespace demix::generate {

at::Tensor sampling_distribution(const at::Tensor& log_probs, const SamplingOptions& options) {
  auto logits = log_probs.to(at::kCPU, at::kDouble);
  if (options.temperature <= 0) {  // greedy: all mass on the arg max
    auto probs = at::zeros_like(logits);
    probs[logits.argmax().item<int64_t>()] = 1.0;
    return probs;
  }
  logits = logits / options.temperature;
  const auto V = logits.size(0);
  if (options.top_k > 0 && options.top_k < V) {
    const auto kth = std::get<0>(logits.topk(options.top_k)).min();
    logits = logits.masked_fill(logits < kth, -INFINITY);
  }
  auto probs = at::softmax(logits, 0);
  if (options.top_p < 1.0) {
    auto [sorted, order] = probs.sort(/*dim=*/0, /*descending=*/true);
    // keep a token while the mass before it is below top_p: the most likely one always stays
    const auto before = sorted.cumsum(0) - sorted;
    probs =
        at::zeros_like(probs).scatter_(0, order, sorted.masked_fill(before >= options.top_p, 0.0));
    probs = probs / probs.sum();
  }
  return probs;
}

Sampler::Sampler(SamplingOptions options)
    : options_(options), generator_(at::make_generator<at::CPUGeneratorImpl>(options.seed)) {}

int64_t Sampler::next(const at::Tensor& log_probs) {
  const auto probs = sampling_distribution(log_probs, options_);
  if (options_.temperature <= 0) return probs.argmax().item<int64_t>();
  return at::multinomial(probs, 1, /*replacement=*/false, generator_).item<int64_t>();
}

}  // namespace demix::generate
