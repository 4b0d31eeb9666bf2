// `demix config`: print the resolved config (defaults < file < --set), or one value of it.

#include <yaml-cpp/yaml.h>

#include <iostream>

#include "demix/core/error.h"
#include "options.h"

namespace demix::cli {

void add_config_command(CLI::App& app) {
  auto options = std::make_shared<ConfigOptions>();
  auto key = std::make_shared<std::string>();
  auto* command = app.add_subcommand("config", "print the resolved config, or one key of it");
  options->add_to(*command);
  command->add_option("--get", *key, "print only this key, e.g. train.out_dir");
  command->callback([options, key] {
    const auto yaml = to_yaml(options->load());
    if (key->empty()) {
      std::cout << yaml;
      return;
    }
    const auto dot = key->find('.');
    const auto root = YAML::Load(yaml);
    const auto node =
        dot == std::string::npos ? YAML::Node() : root[key->substr(0, dot)][key->substr(dot + 1)];
    if (!node) throw Error("--get " + *key + ": no such key (expected section.key)");
    std::cout << (node.IsScalar() ? node.as<std::string>() : YAML::Dump(node)) << "\n";
  });
}

}  // namespace demix::cli
