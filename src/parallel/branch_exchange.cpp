#include "demix/parallel/branch_exchange.h"

namespace demix::parallel {

torch::Tensor C10dBranchExchange::branch_input(const torch::Tensor& x) {
  if (!x.requires_grad()) return x;  // the first block reads the frozen embeddings
  auto input = x.view_as(x);         // a node of its own: the gate's path to x is not summed
  input.register_hook([this](const torch::Tensor& grad) {
    std::vector<torch::Tensor> sum = {grad.contiguous().clone()};
    world_.allreduce(sum)->wait();
    return sum[0];
  });
  return input;
}

std::vector<torch::Tensor> C10dBranchExchange::gather(const torch::Tensor& mine, int64_t branches) {
  TORCH_CHECK(world_.getSize() == branches, "MoDE placement branches: ", branches,
              " branches need as many ranks, the world has ", world_.getSize());
  std::vector<torch::Tensor> send = {mine.detach().contiguous()};
  std::vector<std::vector<torch::Tensor>> received(1);
  for (int64_t r = 0; r < branches; ++r) received[0].push_back(torch::empty_like(send[0]));
  world_.allgather(received, send)->wait();
  auto outputs = received[0];
  outputs[size_t(branch_)] = mine;  // the gradient of this rank's own output stays local
  return outputs;
}

}  // namespace demix::parallel
