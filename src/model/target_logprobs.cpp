#include "demix/model/target_logprobs.h"

#include <torch/autograd.h>

namespace demix::model {
namespace {

struct TargetLogprobs : torch::autograd::Function<TargetLogprobs> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& targets) {
    auto logp = at::_log_softmax(logits, -1, /*half_to_float=*/false);  // one fused pass
    const auto index = targets.unsqueeze(-1);
    auto out = logp.gather(-1, index).squeeze(-1);
    ctx->save_for_backward({logp, index});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto g = grads[0].unsqueeze(-1);  // (N, 1)
    // d/dlogits of log_softmax(logits)[target] = onehot(target) - softmax(logits). The saved
    // log-probabilities become the gradient in place: backward runs once per graph (a second
    // one fails autograd's version check instead of reading a modified buffer).
    auto grad = saved[0].exp_().mul_(-g);
    grad.scatter_add_(-1, saved[1], g);
    return {grad, at::Tensor()};
  }
};

}  // namespace

at::Tensor target_logprobs(const at::Tensor& logits, const at::Tensor& targets) {
  return TargetLogprobs::apply(logits, targets);
}

at::Tensor head_target_logprobs(const at::Tensor& hidden, const at::Tensor& weight,
                                const at::Tensor& targets, int64_t rows, at::Tensor* hits) {
  TORCH_CHECK(rows > 0, "head_target_logprobs: rows must be positive");
  at::NoGradGuard no_grad;
  const int64_t N = hidden.size(0);
  auto out = at::empty({N}, hidden.options().dtype(at::kFloat));
  if (hits) *hits = at::empty({N}, hidden.options().dtype(at::kBool));
  for (int64_t start = 0; start < N; start += rows) {
    const int64_t n = std::min(rows, N - start);
    const auto logits = at::matmul(hidden.narrow(0, start, n), weight.t()).to(at::kFloat);
    const auto index = targets.narrow(0, start, n).unsqueeze(-1);
    if (hits) hits->narrow(0, start, n).copy_(logits.argmax(-1, true).eq(index).squeeze(-1));
    out.narrow(0, start, n)
        .copy_(at::_log_softmax(logits, -1, false).gather(-1, index).squeeze(-1));
  }
  return out;
}

}  // namespace demix::model
