// demix: train, evaluate and adapt DEMix-layer language models.

#include <c10/util/Logging.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "demix/core/error.h"
#include "demix/core/host_memory.h"
#include "options.h"

namespace {
constexpr const char* kOutOfMemory =
    "out of memory (smaller data.sequences_per_domain, eval.batch_size or model sizes): ";
}

int main(int argc, char** argv) {
  demix::keep_freed_host_memory();
  // A failed allocation must throw (a one-line error below), not abort the process.
  FLAGS_caffe2_use_fatal_for_enforce = false;
  CLI::App app{"demix: DEMix-layer language models (one FF expert per domain)"};
  app.require_subcommand(1);
  demix::cli::add_data_commands(app);
  demix::cli::add_cluster_commands(app);
  demix::cli::add_train_command(app);
  demix::cli::add_eval_command(app);
  demix::cli::add_prior_command(app);
  demix::cli::add_config_command(app);
  demix::cli::add_launch_command(app);
  demix::cli::add_expert_command(app);
  demix::cli::add_adapt_command(app);
  demix::cli::add_bench_command(app);
  demix::cli::add_export_command(app);
  demix::cli::add_generate_command(app);
  spdlog::set_pattern("[%H:%M:%S] %v");
  if (argc > 1 && argv[1][0] != '-') {  // CLI11 would only say that a subcommand is required
    std::string known;
    bool found = false;
    for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
      known += (known.empty() ? "" : ", ") + sub->get_name();
      found = found || sub->get_name() == argv[1];
    }
    if (!found) {
      std::cerr << "error: unknown command '" << argv[1] << "' (expected one of: " << known << ")"
                << std::endl;
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);                            // --help
    std::cerr << "error: " << e.what() << " (see demix --help)" << std::endl;  // one line
    return e.get_exit_code();
  } catch (const demix::Error& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  } catch (const c10::Error& e) {  // LibTorch's messages can span lines: the first says it
    const std::string what = e.what_without_backtrace();
    const bool memory = what.find("can't allocate memory") != std::string::npos ||
                        what.find("out of memory") != std::string::npos;
    std::cerr << "error: " << (memory ? kOutOfMemory : "") << what.substr(0, what.find('\n'))
              << std::endl;
    return 1;
  } catch (const std::bad_alloc& e) {
    std::cerr << "error: " << kOutOfMemory << e.what() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
