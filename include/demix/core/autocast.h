#pragma once

// Mixed precision (train.precision: bf16): while an Autocast is alive, matmuls and attention on its
// device run in bfloat16 through ATen's autocast dispatch (CPU or CUDA), while parameters, their
// gradients, the AdamW state and the loss stay fp32. Backward runs the casts autocast recorded.

#include <ATen/autocast_mode.h>

namespace demix {

class Autocast {
 public:
  // enabled = false: a no-op, so callers can write one code path for both precisions.
  Autocast(c10::DeviceType device, bool enabled, at::ScalarType dtype = at::kBFloat16)
      : device_(device),
        enabled_(enabled),
        was_enabled_(at::autocast::is_autocast_enabled(device)),
        previous_(at::autocast::get_autocast_dtype(device)) {
    if (!enabled_) return;
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::set_autocast_dtype(device_, dtype);
    at::autocast::increment_nesting();
  }
  ~Autocast() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();  // cached weight casts
    at::autocast::set_autocast_enabled(device_, was_enabled_);
    at::autocast::set_autocast_dtype(device_, previous_);
  }
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  c10::DeviceType device_;
  bool enabled_, was_enabled_;
  at::ScalarType previous_;
};

}  // namespace demix
