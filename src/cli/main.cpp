// demix: train, evaluate and adapt DEMix-layer language models.

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "demix/core/error.h"
#include "options.h"

int main(int argc, char** argv) {
  CLI::App app{"demix: DEMix-layer language models (one FF expert per domain)"};
  app.require_subcommand(1);
  demix::cli::add_data_commands(app);
  demix::cli::add_train_command(app);
  demix::cli::add_eval_command(app);
  demix::cli::add_prior_command(app);
  demix::cli::add_config_command(app);
  demix::cli::add_launch_command(app);
  demix::cli::add_expert_command(app);
  demix::cli::add_adapt_command(app);
  spdlog::set_pattern("[%H:%M:%S] %v");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const demix::Error& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
