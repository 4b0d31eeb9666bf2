// The experts-in-parallel node against autograd through each expert's own linear, GELU, linear.

#include "demix/model/parallel_experts.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "demix/model/mlp.h"
#include "support/tensor_compare.h"

namespace demix::model {
namespace {

struct Case {
  std::vector<Mlp> experts;
  std::vector<MlpImpl*> raw;
  std::vector<int64_t> rows = {5, 3, 7};
  at::Tensor x, upstream;
};

Case make_case(torch::Dtype dtype) {
  torch::manual_seed(0);
  Case c;
  for (int e = 0; e < 3; ++e) {
    c.experts.emplace_back(8, 16);
    c.experts.back()->to(dtype);
    c.raw.push_back(c.experts.back().get());
  }
  c.x = torch::randn({15, 8}, torch::TensorOptions().dtype(dtype));
  c.upstream = torch::randn({15, 8}, torch::TensorOptions().dtype(dtype));
  return c;
}

// The output, x's gradient and every parameter's gradient (name "e.param"), by autograd through
// each expert on its rows, in float64.
std::map<std::string, at::Tensor> reference(const Case& c) {
  std::map<std::string, at::Tensor> out;
  auto x = c.x.detach().to(torch::kDouble).requires_grad_(true);
  std::vector<at::Tensor> ys;
  std::vector<std::map<std::string, at::Tensor>> params(3);
  int64_t first = 0;
  for (size_t e = 0; e < 3; ++e) {
    for (const auto& p : c.experts[e]->named_parameters())
      params[e][p.key()] =
          p.value().detach().to(torch::kDouble).requires_grad_(p.value().requires_grad());
    const auto rows = x.narrow(0, first, c.rows[e]);
    const auto h =
        at::gelu(at::linear(rows, params[e]["fc1.weight"], params[e]["fc1.bias"]), "tanh");
    ys.push_back(at::linear(h, params[e]["fc2.weight"], params[e]["fc2.bias"]));
    first += c.rows[e];
  }
  const auto y = at::cat(ys);
  (y * c.upstream.to(torch::kDouble)).sum().backward();
  out["y"] = y.detach();
  out["x"] = x.grad();
  for (size_t e = 0; e < 3; ++e)
    for (auto& [name, p] : params[e]) out[std::to_string(e) + "." + name] = p.grad();
  return out;
}

void expect_matches(const Case& c, double tolerance) {
  const auto ref = reference(c);
  auto x = c.x.clone().requires_grad_(true);
  const auto y = parallel_expert_mlps(x, c.rows, c.raw);
  (y * c.upstream).sum().backward();
  EXPECT_LT(test_support::relative_difference(y.detach().to(torch::kDouble), ref.at("y")),
            tolerance);
  EXPECT_LT(test_support::relative_difference(x.grad().to(torch::kDouble), ref.at("x")), tolerance);
  for (size_t e = 0; e < 3; ++e)
    for (const auto& p : c.experts[e]->named_parameters()) {
      const auto& want = ref.at(std::to_string(e) + "." + p.key());
      if (!want.defined()) {
        EXPECT_FALSE(p.value().grad().defined()) << e << "." << p.key();
        continue;
      }
      ASSERT_TRUE(p.value().grad().defined()) << e << "." << p.key();
      EXPECT_LT(test_support::relative_difference(p.value().grad().to(torch::kDouble), want),
                tolerance)
          << e << "." << p.key();
    }
}

TEST(ParallelExpertsTest, MatchesPerExpertAutogradInFloat64) {
  expect_matches(make_case(torch::kDouble), 1e-12);
}

TEST(ParallelExpertsTest, MatchesPerExpertAutogradInFloat32) {
  expect_matches(make_case(torch::kFloat), 1e-5);  // through the CPU GELU kernel
}

TEST(ParallelExpertsTest, AFrozenExpertGetsNoGradient) {
  auto c = make_case(torch::kDouble);
  for (auto& p : c.experts[1]->parameters()) p.requires_grad_(false);
  expect_matches(c, 1e-12);
}

}  // namespace
}  // namespace demix::model
