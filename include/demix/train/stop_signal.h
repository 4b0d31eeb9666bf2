#pragma once

// Ctrl-C or a scheduler's SIGTERM during training: the first SIGINT/SIGTERM asks the run to stop
// once the current step is done (every rank agrees on the step, a checkpoint is written); a second
// one ends the process at once. The process then ends by the same signal, so that a calling shell
// script stops too instead of going on to its next command.

namespace demix::train {

class StopSignal {
 public:
  StopSignal();   // installs the handlers for SIGINT and SIGTERM
  ~StopSignal();  // restores the previous ones
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  static int received();  // the first signal received while installed, or 0
};

// Flushes the logs and ends the process by `signal` with its default action.
[[noreturn]] void exit_by_signal(int signal);

}  // namespace demix::train
