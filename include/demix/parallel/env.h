#pragma once

// The launch environment, as torchrun (and `demix launch`) set it: RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT. Absent, the process is rank 0 of 1. Under torchrun
// the elastic agent already serves the TCPStore (TORCHELASTIC_USE_AGENT_STORE=True), so every
// rank, rank 0 included, connects to it as a client.

#include <string>

namespace demix::parallel {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;

  static DistEnv from_environment();  // throws Error naming a malformed variable
};

}  // namespace demix::parallel
