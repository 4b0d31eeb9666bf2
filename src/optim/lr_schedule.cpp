#include "demix/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "demix/core/config.h"

namespace demix::optim {

LrSchedule::LrSchedule(const OptimConfig& optim, int64_t total_steps)
    : peak_(optim.lr),
      min_(optim.min_lr),
      power_(optim.schedule == LrShape::kLinear ? 1.0 : optim.poly_power),
      warmup_(std::min(optim.warmup_steps, total_steps)),  // a short run warms up to its end
      total_(total_steps),
      cosine_(optim.schedule == LrShape::kCosine) {}

double LrSchedule::lr_at(int64_t step) const {
  if (step < warmup_) return peak_ * double(step + 1) / double(warmup_);
  const int64_t decay_steps = std::max<int64_t>(1, total_ - 1 - warmup_);
  const double progress = std::clamp(double(step - warmup_) / double(decay_steps), 0.0, 1.0);
  const double remaining =
      cosine_ ? 0.5 * (1.0 + std::cos(M_PI * progress)) : std::pow(1.0 - progress, power_);
  return min_ + (peak_ - min_) * remaining;
}

}  // namespace demix::optim
