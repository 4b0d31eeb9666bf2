#include "demix/parallel/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>

#include "demix/core/error.h"

namespace demix::parallel {
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

// SIGINT and SIGTERM to the launcher: counted here, forwarded to the ranks by the wait loop.
volatile sig_atomic_t g_signal = 0;
volatile sig_atomic_t g_signals = 0;

void on_signal(int signal) {
  g_signal = signal;
  g_signals = g_signals + 1;
}

void catch_stop_signals() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  for (const int signal : {SIGINT, SIGTERM}) ::sigaction(signal, &action, nullptr);
}

// In the child, before exec: its own process group (a terminal's Ctrl-C reaches the launcher
// alone, which forwards it once), and death with the launcher, however the launcher ends.
void tie_to_launcher(pid_t launcher) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != launcher) ::_exit(1);  // the launcher died before prctl took effect
}

[[noreturn]] void exec_rank(const char* self, const std::vector<std::string>& args, int rank,
                            int n_procs, int port) {
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
  std::vector<char*> argv = {const_cast<char*>(self)};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(self, argv.data());
  std::perror("demix launch: exec");
  ::_exit(127);
}

// The first signal is passed on for the ranks to stop cleanly; a second one kills them.
void forward_signals(const std::map<pid_t, int>& rank_of, int& forwarded) {
  const int received = g_signals;
  if (received <= forwarded) return;
  forwarded = received;
  const int signal = received == 1 ? int(g_signal) : SIGKILL;
  if (received == 1)
    std::fprintf(stderr,
                 "demix launch: got %s; passed it on to the %zu ranks, waiting for them "
                 "(send it again to kill them)\n",
                 strsignal(signal), rank_of.size());
  else
    std::fprintf(stderr, "demix launch: killing the %zu ranks\n", rank_of.size());
  for (const auto& [pid, rank] : rank_of) ::kill(pid, signal);
}

// After a rank failed: SIGTERM to the others, SIGKILL to those left after a grace period.
void stop_ranks(std::map<pid_t, int>& rank_of) {
  int status = 0;
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

  catch_stop_signals();  // before the first fork: a signal during start-up is forwarded too
  const pid_t launcher = ::getpid();
  std::map<pid_t, int> rank_of;
  for (int rank = 0; rank < n_procs; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) throw Error("demix launch: fork failed");
    if (pid == 0) {
      tie_to_launcher(launcher);
      exec_rank(self, args, rank, n_procs, port);
    }
    rank_of[pid] = rank;
  }

  int exit_code = 0, forwarded = 0;
  while (!rank_of.empty()) {
    forward_signals(rank_of, forwarded);
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid == 0) {  // polled, so that a signal is forwarded at once
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (pid < 0) break;
    const int rank = rank_of[pid];
    rank_of.erase(pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    exit_code = 1;
    if (forwarded > 0) continue;  // stopping on request: wait for the others as they stop
    std::fprintf(stderr, "demix launch: rank %d (pid %d) %s; stopping the other %zu ranks\n", rank,
                 int(pid), describe(status).c_str(), rank_of.size());
    stop_ranks(rank_of);
  }
  return exit_code;
}

}  // namespace demix::parallel
