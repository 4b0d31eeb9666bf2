#include "demix/train/stop_signal.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace demix::train {
namespace {

volatile std::sig_atomic_t first_signal = 0;
volatile std::sig_atomic_t signals_seen = 0;
struct sigaction previous_int, previous_term;

void on_signal(int signal) {
  if (signals_seen++ > 0) {  // the second one: no more waiting
    const char message[] = "\ndemix: second signal, stopping now without a checkpoint\n";
    [[maybe_unused]] const auto n = ::write(STDERR_FILENO, message, sizeof(message) - 1);
    ::signal(signal, SIG_DFL);
    ::raise(signal);
    return;
  }
  first_signal = signal;
  const char message[] = "\ndemix: stopping after this step (a second Ctrl-C stops at once)\n";
  [[maybe_unused]] const auto n = ::write(STDERR_FILENO, message, sizeof(message) - 1);
}

}  // namespace

StopSignal::StopSignal() {
  first_signal = 0;
  signals_seen = 0;
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a signal must not fail a read or a socket call halfway
  // A signal ignored on entry stays ignored (a run started with nohup, or in the background of
  // a script, is not meant to stop on the terminal's Ctrl-C).
  for (auto [signal, previous] : {std::pair{SIGINT, &previous_int}, {SIGTERM, &previous_term}}) {
    ::sigaction(signal, nullptr, previous);
    if (previous->sa_handler != SIG_IGN) ::sigaction(signal, &action, nullptr);
  }
}

StopSignal::~StopSignal() {
  ::sigaction(SIGINT, &previous_int, nullptr);
  ::sigaction(SIGTERM, &previous_term, nullptr);
}

int StopSignal::received() { return first_signal; }

void exit_by_signal(int signal) {
  spdlog::default_logger()->flush();
  std::fflush(nullptr);
  ::signal(signal, SIG_DFL);
  ::raise(signal);
  std::_Exit(128 + signal);  // only if the signal was blocked
}

}  // namespace demix::train
