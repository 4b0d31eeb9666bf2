// `demix launch -n N -- train --config ...`: a local multi-process launch without Python.

#include <cstdlib>

#include "demix/parallel/launcher.h"
#include "options.h"

namespace demix::cli {

void add_launch_command(CLI::App& app) {
  auto n_procs = std::make_shared<int>(2);
  auto port = std::make_shared<int>(0);
  auto args = std::make_shared<std::vector<std::string>>();
  auto* command = app.add_subcommand(
      "launch", "start N local ranks of a demix command (torchrun's variables, no Python)");
  command->add_option("-n,--nproc", *n_procs, "number of processes")->capture_default_str();
  command->add_option("--port", *port, "MASTER_PORT (default: a free port)");
  command->add_option("args", *args, "the command after --, e.g. -- train --config X")->required();
  command->callback([n_procs, port, args] {
    const int code = parallel::launch_local(*n_procs, *args, *port);
    if (code != 0) std::exit(code);
  });
}

}  // namespace demix::cli
