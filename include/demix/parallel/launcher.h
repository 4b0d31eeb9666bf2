#pragma once

// `demix launch -n N -- ARGS...`: starts N local copies of this binary with ARGS and the
// torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
// so that no Python is needed at run time. The first child to fail (non-zero exit or a signal)
// is named, the others are stopped (SIGTERM, then SIGKILL after a grace period), and the launch
// exits non-zero. SIGINT or SIGTERM to the launcher is passed on to every rank, and the launcher
// waits for them (a second one kills them); each rank runs in its own process group, so that a
// terminal's Ctrl-C reaches it once, through the launcher, and dies with the launcher however the
// launcher ends (PR_SET_PDEATHSIG).

#include <string>
#include <vector>

namespace demix::parallel {

// Returns the launch's exit code: 0 when every rank exited 0.
int launch_local(int n_procs, const std::vector<std::string>& args, int port);

}  // namespace demix::parallel
