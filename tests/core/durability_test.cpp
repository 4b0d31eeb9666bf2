// Durable writes: write_file_atomic fsyncs the file before its rename and the directory after it,
// and every failure (a full disk, a failing fsync or close) is an Error naming the file that
// leaves no partial file. fsync and close are interposed below (calls pass through to libc
// unless a test asks for a failure), so the tests see the calls the code makes.

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "demix/checkpoint/checkpoint.h"
#include "demix/core/error.h"
#include "demix/core/file.h"
#include "support/small_config.h"

namespace {

struct FdCalls {
  std::mutex mutex;
  std::atomic<bool> recording{false};
  std::vector<std::string> log;        // "fsync <path>", "close <path>"
  std::string fail_fsync, fail_close;  // a call on a path containing this fails with EIO
};
FdCalls& calls() {
  static FdCalls c;
  return c;
}

std::string path_of(int fd) {
  char link[64], target[4096];
  std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  const auto n = ::readlink(link, target, sizeof(target) - 1);
  return n > 0 ? std::string(target, size_t(n)) : "";
}

// Records the call and says whether it is to fail.
bool intercept(const char* op, int fd, const std::string FdCalls::*fail) {
  auto& c = calls();
  if (!c.recording) return false;
  const auto path = path_of(fd);
  std::lock_guard<std::mutex> lock(c.mutex);
  c.log.push_back(std::string(op) + " " + path);
  return !(c.*fail).empty() && path.find(c.*fail) != std::string::npos;
}

}  // namespace

extern "C" int fsync(int fd) {
  static const auto real = reinterpret_cast<int (*)(int)>(::dlsym(RTLD_NEXT, "fsync"));
  if (intercept("fsync", fd, &FdCalls::fail_fsync)) {
    errno = EIO;
    return -1;
  }
  return real(fd);
}

extern "C" int close(int fd) {
  static const auto real = reinterpret_cast<int (*)(int)>(::dlsym(RTLD_NEXT, "close"));
  const bool fail = intercept("close", fd, &FdCalls::fail_close);
  const int result = real(fd);
  if (!fail) return result;
  errno = EIO;  // as NFS reports a failed write back
  return -1;
}

namespace demix {
namespace {
namespace fs = std::filesystem;

class DurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("demix_durability." + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    dir_ = fs::canonical(dir_);  // as /proc/self/fd names it
  }
  void TearDown() override {
    auto& c = calls();
    c.recording = false;
    c.fail_fsync.clear();
    c.fail_close.clear();
    c.log.clear();
    fs::remove_all(dir_);
  }
  static void record() { calls().recording = true; }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_))
      if (e.is_regular_file()) out.push_back(fs::relative(e.path(), dir_).string());
    std::sort(out.begin(), out.end());
    return out;
  }
  static std::string read(const fs::path& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }
  // write_file_atomic(path, text) must throw an Error naming `path` and containing `reason`.
  static void expect_write_error(const std::string& path, const std::string& text,
                                 const std::string& reason) {
    try {
      write_file_atomic(path, text);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(path), std::string::npos) << what;
      EXPECT_NE(what.find(reason), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
  // A failing call (`fail`: fsync or close) on the temporary file of `name`: an Error containing
  // `reason`, the old file kept and no temporary file left.
  void expect_failure_keeps_old_file(std::string FdCalls::*fail, const std::string& name,
                                     const std::string& reason) {
    const auto path = (dir_ / name).string();
    write_file_atomic(path, "old\n");
    calls().*fail = name + ".tmp";
    record();
    expect_write_error(path, "new\n", reason);
    EXPECT_EQ(read(path), "old\n");
    EXPECT_EQ(files(), std::vector<std::string>{name});
  }
  fs::path dir_;
};

// The first entry of `log` that starts with `prefix` (or equals it), log.size() if none.
size_t index_of(const std::vector<std::string>& log, const std::string& prefix,
                bool whole = false) {
  for (size_t i = 0; i < log.size(); ++i)
    if (whole ? log[i] == prefix : log[i].rfind(prefix, 0) == 0) return i;
  return log.size();
}

TEST_F(DurabilityTest, FileIsSyncedBeforeItsRenameAndTheDirectoryAfter) {
  const auto path = (dir_ / "a.json").string();
  record();
  write_file_atomic(path, "{}\n");
  calls().recording = false;
  const auto& log = calls().log;
  const auto file_sync = index_of(log, "fsync " + path + ".tmp.");
  const auto file_close = index_of(log, "close " + path + ".tmp.");
  const auto dir_sync = index_of(log, "fsync " + dir_.string(), true);
  ASSERT_LT(file_sync, log.size()) << "the file was never fsynced";
  EXPECT_LT(file_sync, file_close);
  ASSERT_LT(dir_sync, log.size()) << "the directory was never fsynced";
  EXPECT_GT(dir_sync, file_close);
  EXPECT_EQ(read(path), "{}\n");
}

TEST_F(DurabilityTest, FailedFsyncIsAnErrorAndKeepsTheOldFile) {
  expect_failure_keeps_old_file(&FdCalls::fail_fsync, "b.json", "Input/output error");
}

TEST_F(DurabilityTest, FailedCloseIsAnErrorAndKeepsTheOldFile) {
  expect_failure_keeps_old_file(&FdCalls::fail_close, "c.json", "close");
}

// A full disk, as RLIMIT_FSIZE makes one: write() fails with EFBIG once SIGXFSZ is ignored. In a
// child process, so the limit ends with it.
TEST_F(DurabilityTest, FullDiskIsAnErrorAndKeepsTheOldFile) {
  const auto path = (dir_ / "d.safetensors").string();
  write_file_atomic(path, "old\n");
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(pipe_fds[0]);
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    std::string message = "no error";
    try {
      write_file_atomic(path, std::string(1 << 16, 'x'));
    } catch (const Error& e) {
      message = e.what();
    }
    (void)!::write(pipe_fds[1], message.data(), message.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string message;
  char buffer[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0;)
    message.append(buffer, size_t(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of a signal";
  EXPECT_NE(message.find(path + ": cannot write: File too large"), std::string::npos) << message;
  EXPECT_EQ(read(path), "old\n");
  EXPECT_EQ(files(), std::vector<std::string>{"d.safetensors"});
}

// With keep_checkpoints 1, the previous checkpoint may go only once the new one is durable: a
// failing fsync of `latest` leaves it in place.
TEST_F(DurabilityTest, OldCheckpointStaysUntilTheNewOneIsDurable) {
  const auto config = test_support::small_config();
  model::Gpt m(model::GptConfig::from(config), 2);
  const auto run = (dir_ / "run").string();
  const auto first = checkpoint::save_checkpoint(run, *m, nullptr, config, {1, 0}, 1);
  calls().fail_fsync = "checkpoints/latest.tmp";
  record();
  EXPECT_THROW(checkpoint::save_checkpoint(run, *m, nullptr, config, {2, 0}, 1), Error);
  EXPECT_TRUE(fs::exists(first + "/manifest.json"));
  EXPECT_EQ(read(run + "/checkpoints/latest"), "step_00000001\n");
}

}  // namespace
}  // namespace demix
