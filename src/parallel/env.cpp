#include "demix/parallel/env.h"

#include <cstdlib>

#include "demix/core/error.h"

namespace demix::parallel {
namespace {

int int_var(const char* name, int fallback, int min) {
  const char* value = std::getenv(name);
  if (!value) return fallback;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (end == value || *end != '\0' || parsed < min)
    throw Error(std::string(name) + "=" + value +
                ": expected an integer >= " + std::to_string(min));
  return int(parsed);
}

}  // namespace

DistEnv DistEnv::from_environment() {
  DistEnv env;
  env.world_size = int_var("WORLD_SIZE", 1, 1);
  env.rank = int_var("RANK", 0, 0);
  env.local_rank = int_var("LOCAL_RANK", env.rank, 0);
  env.local_world_size = int_var("LOCAL_WORLD_SIZE", env.world_size, 1);
  env.master_port = int_var("MASTER_PORT", 29500, 1);
  if (const char* addr = std::getenv("MASTER_ADDR")) env.master_addr = addr;
  if (const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE"))
    env.agent_store = std::string(agent) == "True" || std::string(agent) == "1";
  if (env.rank >= env.world_size)
    throw Error("RANK=" + std::to_string(env.rank) +
                ": expected < WORLD_SIZE=" + std::to_string(env.world_size));
  if (env.local_rank >= env.local_world_size)
    throw Error("LOCAL_RANK=" + std::to_string(env.local_rank) +
                ": expected < LOCAL_WORLD_SIZE=" + std::to_string(env.local_world_size));
  if (env.master_port > 65535) throw Error("MASTER_PORT: expected a port number <= 65535");
  return env;
}

}  // namespace demix::parallel
