// Writes what tests/model/parity_check.py compares against its own PyTorch model: a checkpoint of
// a small model after two AdamW steps (so that biases and LayerNorms are no longer at their
// initial values) and the C++ logits for a fixed batch whose rows mix domains out of order.
//
// usage: demix_parity_dump CONFIG OUT_DIR [--set section.key=value ...]

#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "demix/checkpoint/checkpoint.h"
#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/core/safetensors.h"
#include "demix/eval/domain_posterior.h"
#include "demix/optim/optimizer.h"

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::cerr << "usage: demix_parity_dump CONFIG OUT_DIR [--set k=v ...]\n";
    return 2;
  }
  std::vector<std::string> overrides;
  for (int i = 3; i + 1 < argc; i += 2) overrides.push_back(argv[i + 1]);
  const auto config = demix::load_config(argv[1], overrides);
  const std::string out = argv[2];
  std::filesystem::remove_all(out);

  demix::model::Gpt model(demix::model::GptConfig::from(config), config.train.seed);
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : model->named_parameters()) named.emplace_back(item.key(), item.value());
  demix::optim::AdamW optimizer(named, config.optim);

  const int64_t E = int64_t(config.data.domains.size()), T = config.model.seq_len;
  const int64_t V = config.model.vocab_size;
  torch::manual_seed(1234);
  std::vector<int64_t> domains;
  for (int64_t e = E - 1; e >= 0; --e) domains.push_back(e);  // reversed: exercises the permutation
  domains.push_back(E > 1 ? 1 : 0);
  const auto rows = int64_t(domains.size());
  const demix::model::Routing routing(domains, torch::kCPU);
  for (int step = 0; step < 2; ++step) {
    optimizer.zero_grad();
    const auto x = torch::randint(0, V, {rows, T}), y = torch::randint(0, V, {rows, T});
    model->loss(x, y, routing).backward();
    optimizer.step(5e-3);
  }
  const auto checkpoint =
      demix::checkpoint::save_checkpoint(out, *model, &optimizer, config, {2, 0}, 1);

  torch::NoGradGuard no_grad;
  const auto tokens = torch::randint(0, V, {rows, T});
  const auto logits = model->forward(tokens, routing);
  demix::save_safetensors(
      out + "/logits.safetensors",
      {{"tokens", tokens}, {"domains", torch::tensor(domains)}, {"logits", logits}});
  // The domain posterior on synthetic, very negative log-probabilities of long blocks, for the
  // NumPy check in parity_check.py --posterior.
  const auto expert_logprobs = -(torch::rand({2, 2048, 4}, torch::kDouble) * 30.0 + 0.01);
  const auto log_prior = torch::tensor({0.1, 0.2, 0.3, 0.4}, torch::kDouble).log();
  demix::TensorDict posterior;
  posterior["expert_logprobs"] = expert_logprobs;
  posterior["log_prior"] = log_prior;
  for (const auto& [name, kind] :
       {std::pair{"prefix", demix::eval::PosteriorKind::kPrefix},
        std::pair{"last_token", demix::eval::PosteriorKind::kLastToken}}) {
    const auto log_post = demix::eval::log_posterior(expert_logprobs, log_prior, kind);
    posterior[std::string(name) + "/log_posterior"] = log_post;
    posterior[std::string(name) + "/mixture"] =
        demix::eval::mixture_logprobs(expert_logprobs, log_post);
    posterior[std::string(name) + "/block"] =
        demix::eval::log_block_posterior(expert_logprobs, log_prior, kind);
  }
  demix::save_safetensors(out + "/posterior.safetensors", posterior);
  std::cout << checkpoint << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
