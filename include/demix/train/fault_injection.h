#pragma once

// Failures on purpose, for the reliability tests: DEMIX_FAULT="KIND:RANK:STEP[,KIND:RANK:STEP...]"
// makes rank RANK, at the start of optimizer step STEP (0-based), abort (SIGABRT, as a crash),
// hang (sleep until killed, as a deadlock) or nan (its loss becomes NaN, as a numerical blow-up);
// kill: SIGKILL itself in the middle of writing the checkpoint of step STEP (steps done).
// Unset in normal runs: then nothing is checked per step beyond one comparison.

#include <cstdint>
#include <vector>

namespace demix::train {

class FaultInjection {
 public:
  FaultInjection() = default;
  static FaultInjection from_environment(int rank);  // throws Error on a malformed DEMIX_FAULT

  void before_step(int64_t step) const;        // abort or hang here if asked to
  void during_checkpoint(int64_t step) const;  // SIGKILL here if asked to
  bool nan_loss_at(int64_t step) const;

 private:
  enum class Kind { kAbort, kHang, kNan, kKill };
  struct Fault {
    Kind kind;
    int64_t step;
  };
  std::vector<Fault> faults_;  // this rank's
};

}  // namespace demix::train
