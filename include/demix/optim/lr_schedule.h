#pragma once

// The learning rate as a pure function of the step: linear warm-up from 0 to the peak over
// `warmup_steps`, then cosine, linear or polynomial decay to `min_lr` at the last step.

#include <cstdint>
#include <string>

namespace demix {
struct OptimConfig;
}

namespace demix::optim {

class LrSchedule {
 public:
  LrSchedule(const OptimConfig& optim, int64_t total_steps);
  double lr_at(int64_t step) const;  // step in [0, total_steps)

 private:
  double peak_, min_, power_;
  int64_t warmup_, total_;
  bool cosine_;  // else (1 - progress)^power
};

}  // namespace demix::optim
