#include "demix/dist/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>

#include "demix/core/error.h"

namespace demix::dist {
namespace {

int free_port() {  // the kernel picks an unused port; the first rank binds it right after
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw Error("demix launch: cannot find a free port on 127.0.0.1");
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
  return "stopped";
}

}  // namespace

int launch_local(int n_procs, const std::vector<std::string>& args, int port) {
  if (n_procs < 1) throw Error("demix launch: -n expects at least 1 process");
  if (args.empty())
    throw Error("demix launch: nothing to run (usage: demix launch -n N -- train ...)");
  if (port == 0) port = free_port();
  char self[4096];
  const ssize_t len = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len <= 0) throw Error("demix launch: cannot find its own executable");
  self[len] = '\0';

  std::map<pid_t, int> rank_of;
  for (int rank = 0; rank < n_procs; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) throw Error("demix launch: fork failed");
    if (pid == 0) {
      const auto set = [](const char* name, const std::string& value) {
        ::setenv(name, value.c_str(), 1);
      };
      set("RANK", std::to_string(rank));
      set("LOCAL_RANK", std::to_string(rank));
      set("WORLD_SIZE", std::to_string(n_procs));
      set("LOCAL_WORLD_SIZE", std::to_string(n_procs));
      set("MASTER_ADDR", "127.0.0.1");
      set("MASTER_PORT", std::to_string(port));
      ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");
      std::vector<char*> argv = {self};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(self, argv.data());
      std::perror("demix launch: exec");
      ::_exit(127);
    }
    rank_of[pid] = rank;
  }

  int exit_code = 0;
  while (!rank_of.empty()) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) break;
    const int rank = rank_of[pid];
    rank_of.erase(pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    std::fprintf(stderr, "demix launch: rank %d (pid %d) %s; stopping the other %zu ranks\n", rank,
                 int(pid), describe(status).c_str(), rank_of.size());
    exit_code = 1;
    for (const auto& [other, r] : rank_of) ::kill(other, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!rank_of.empty() && std::chrono::steady_clock::now() < deadline) {
      const pid_t done = ::waitpid(-1, &status, WNOHANG);
      if (done > 0)
        rank_of.erase(done);
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (const auto& [other, r] : rank_of) ::kill(other, SIGKILL);
    while (::waitpid(-1, &status, 0) > 0) {
    }
    rank_of.clear();
  }
  return exit_code;
}

}  // namespace demix::dist
