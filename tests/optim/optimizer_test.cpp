#include "demix/optim/optimizer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "demix/core/config.h"

namespace demix::optim {
namespace {

// Two steps of AdamW on a 2x2 matrix and a bias, against the update written out by hand
// (Loshchilov & Hutter, decoupled decay; PyTorch's bias-corrected form).
TEST(AdamWTest, MatchesTheClosedForm) {
  OptimConfig o;
  o.beta1 = 0.9;
  o.beta2 = 0.99;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  auto w = torch::tensor({{1.0f, -2.0f}, {0.5f, 3.0f}}).requires_grad_();
  auto b = torch::tensor({0.25f, -0.75f}).requires_grad_();
  AdamW adam({{"blocks.0.attn.qkv.weight", w}, {"blocks.0.attn.qkv.bias", b}}, o);
  const std::vector<std::vector<float>> gw = {{0.1f, -0.2f, 0.3f, 0.4f},
                                              {-0.5f, 0.1f, 0.2f, -0.1f}};
  const std::vector<std::vector<float>> gb = {{1.0f, -1.0f}, {0.5f, 2.0f}};
  const double lrs[2] = {0.01, 0.005};

  std::vector<double> ref_w = {1.0, -2.0, 0.5, 3.0}, ref_b = {0.25, -0.75};
  std::vector<double> mw(4), vw(4), mb(2), vb(2);
  auto reference = [&](std::vector<double>& p, std::vector<double>& m, std::vector<double>& v,
                       const std::vector<float>& g, double lr, double wd, int t) {
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1 - lr * wd;
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.99 * v[i] + 0.01 * double(g[i]) * g[i];
      const double mhat = m[i] / (1 - std::pow(0.9, t)), vhat = v[i] / (1 - std::pow(0.99, t));
      p[i] -= lr * mhat / (std::sqrt(vhat) + 1e-8);
    }
  };
  for (int t = 0; t < 2; ++t) {
    w.mutable_grad() = torch::tensor(gw[t]).view({2, 2});
    b.mutable_grad() = torch::tensor(gb[t]);
    adam.step(lrs[t]);
    reference(ref_w, mw, vw, gw[t], lrs[t], 0.1, t + 1);
    reference(ref_b, mb, vb, gb[t], lrs[t], 0.0, t + 1);  // biases never decay
  }
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(w.view(-1)[i].item<double>(), ref_w[i], 1e-6) << i;
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(b[i].item<double>(), ref_b[i], 1e-6) << i;
}

TEST(AdamWTest, DecayGroups) {
  const auto m = torch::zeros({2, 2}), v = torch::zeros({2});
  EXPECT_TRUE(AdamW::decays("blocks.0.ff.experts.1.fc1.weight", m));
  EXPECT_FALSE(AdamW::decays("blocks.0.ff.experts.1.fc1.bias", v));
  EXPECT_FALSE(AdamW::decays("blocks.0.ln_1.weight", v));
  EXPECT_FALSE(AdamW::decays("wte.weight", m));
  EXPECT_FALSE(AdamW::decays("wpe.weight", m));
}

TEST(AdamWTest, ParametersWithoutGradientsStayPut) {
  auto a = torch::ones({2, 2}).requires_grad_(), b = torch::ones({2, 2}).requires_grad_();
  AdamW adam({{"a.weight", a}, {"b.weight", b}}, OptimConfig{});
  a.mutable_grad() = torch::ones({2, 2});
  adam.step(0.1);
  EXPECT_TRUE(torch::equal(b, torch::ones({2, 2})));
  EXPECT_FALSE(torch::equal(a, torch::ones({2, 2})));
  EXPECT_EQ(adam.state().at("step/b.weight").item<float>(), 0.0f);
}

TEST(ClipTest, ClippedStepEqualsAStepOnGradientsScaledToMaxNorm) {
  OptimConfig optim;
  optim.eps = 1.0;  // large: the update then depends on the gradient's scale
  optim.weight_decay = 0.0;
  auto a = torch::zeros({2}).requires_grad_(), b = torch::zeros({1}).requires_grad_();
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  const auto norm = grad_norm({a, b});
  EXPECT_NEAR(norm.item<double>(), 5.0, 1e-6);
  AdamW clipped({{"a", a}, {"b", b}}, optim);
  clipped.step(0.1, {}, clip_divisor(norm, 1.0));

  // The same step on the gradients scaled by hand to norm 1: (0.6, 0) and (0.8).
  auto a_ref = torch::zeros({2}).requires_grad_(), b_ref = torch::zeros({1}).requires_grad_();
  a_ref.mutable_grad() = torch::tensor({0.6f, 0.0f});
  b_ref.mutable_grad() = torch::tensor({0.8f});
  AdamW reference({{"a", a_ref}, {"b", b_ref}}, optim);
  reference.step(0.1);
  EXPECT_TRUE(torch::allclose(a, a_ref, 0, 1e-6)) << a << a_ref;
  EXPECT_TRUE(torch::allclose(b, b_ref, 0, 1e-6)) << b << b_ref;

  EXPECT_NEAR(clip_divisor(norm, 10.0).item<double>(), 1.0, 0.0);  // under the limit: unscaled
  EXPECT_FALSE(clip_divisor(norm, 0.0).defined());                 // clipping off
}

TEST(ClipTest, SquaredNormMatchesAFloat64Sum) {
  torch::manual_seed(0);
  const auto g = torch::randn({1 << 20}) * 1e-3;
  const double exact = g.to(torch::kDouble).square().sum().item<double>();
  EXPECT_NEAR(squared_norm(g).item<double>(), exact, 1e-6 * exact);
  EXPECT_NEAR(squared_norm(g.view({1024, 1024}).t()).item<double>(), exact, 1e-6 * exact);
}

}  // namespace
}  // namespace demix::optim
