#include "demix/optim/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>

#include "demix/core/config.h"

namespace demix::optim {
namespace {

OptimConfig optim(const std::string& schedule) {
  OptimConfig o;
  o.lr = 1.0;
  o.min_lr = 0.1;
  o.warmup_steps = 4;
  o.schedule = parse_choice<LrShape>(schedule).value();
  o.poly_power = 2.0;
  return o;
}

TEST(LrScheduleTest, WarmsUpLinearlyFromZero) {
  LrSchedule s(optim("cosine"), 14);
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.25);
  EXPECT_DOUBLE_EQ(s.lr_at(1), 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(3), 1.0);
}

TEST(LrScheduleTest, CosineDecaysToMinAtTheLastStep) {
  LrSchedule s(optim("cosine"), 14);  // decay over steps 4..13, 9 intervals
  for (int step = 4; step < 14; ++step) {
    const double p = (step - 4) / 9.0;
    EXPECT_NEAR(s.lr_at(step), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * p)), 1e-15) << step;
  }
  EXPECT_DOUBLE_EQ(s.lr_at(13), 0.1);
}

TEST(LrScheduleTest, LinearAndPolyShapes) {
  LrSchedule linear(optim("linear"), 14), poly(optim("poly"), 14);
  EXPECT_NEAR(linear.lr_at(7), 0.1 + 0.9 * (1 - 3.0 / 9), 1e-15);
  EXPECT_NEAR(poly.lr_at(7), 0.1 + 0.9 * std::pow(1 - 3.0 / 9, 2), 1e-15);
  EXPECT_DOUBLE_EQ(linear.lr_at(13), 0.1);
}

TEST(LrScheduleTest, WarmupLongerThanTheRunIsCappedAtTheRun) {
  LrSchedule s(optim("cosine"), 3);  // warmup_steps = 4 > 3 steps: warm up over all 3
  EXPECT_DOUBLE_EQ(s.lr_at(0), 1.0 / 3);
  EXPECT_DOUBLE_EQ(s.lr_at(1), 2.0 / 3);
  EXPECT_DOUBLE_EQ(s.lr_at(2), 1.0);
}

}  // namespace
}  // namespace demix::optim
