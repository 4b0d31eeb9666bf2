#pragma once

// Keys and values of the tokens a model has already seen, so that generating token t attends to
// them instead of recomputing the whole prefix: one forward per new token, linear in the length.

#include <ATen/ATen.h>

#include <vector>

namespace demix::model {

struct LayerKv {
  at::Tensor k, v;  // (B, n_head, capacity, head_size), allocated by the first forward
};

struct KvCache {
  explicit KvCache(int64_t capacity) : capacity(capacity) {}
  int64_t capacity;    // positions the model can hold (its context length)
  int64_t length = 0;  // positions filled
  std::vector<LayerKv> layers;
};

}  // namespace demix::model
