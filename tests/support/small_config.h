#pragma once

// The small DEMix config the unit tests build models and checkpoints from: 3 experts (alpha,
// beta, gamma), 2 layers, d_model 16, a 40-token vocabulary, 8-token sequences.

#include "demix/core/config.h"

namespace demix::test_support {

inline Config small_config() {
  Config c;
  c.model.vocab_size = 40;
  c.model.seq_len = 8;
  c.model.d_model = 16;
  c.model.n_layer = 2;
  c.model.n_head = 2;
  c.data.domains = {"alpha", "beta", "gamma"};
  return c;
}

}  // namespace demix::test_support
