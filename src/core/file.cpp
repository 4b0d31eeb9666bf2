#include "demix/core/file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "demix/core/error.h"

namespace demix {

std::string temp_path_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

namespace {

std::string system_error(const std::string& path, const std::string& what) {
  return path + ": " + what + ": " + std::strerror(errno);
}

// Writes every byte, fsyncs and closes `fd`; the message names the first failure.
void write_all_and_close(int fd, const std::string& text, const std::string& path) {
  for (size_t done = 0; done < text.size();) {
    const auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;  // no progress: never loop forever
      const auto message = system_error(path, "cannot write");
      ::close(fd);
      throw Error(message);
    }
    done += size_t(n);
  }
  if (::fsync(fd) != 0) {
    const auto message = system_error(path, "cannot write (fsync)");
    ::close(fd);
    throw Error(message);
  }
  if (::close(fd) != 0) throw Error(system_error(path, "cannot write (close)"));
}

}  // namespace

void sync_directory(const std::string& dir) {
  const auto name = dir.empty() ? std::string(".") : dir;
  const int fd = ::open(name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw Error(system_error(name, "cannot open the directory to sync it"));
  // EINVAL: a file system that cannot sync directories
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const auto message = system_error(name, "cannot sync the directory");
    ::close(fd);
    throw Error(message);
  }
  if (::close(fd) != 0) throw Error(system_error(name, "cannot close the directory"));
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const auto parent = std::filesystem::path(path).parent_path();
  std::error_code error;
  if (!parent.empty()) std::filesystem::create_directories(parent, error);
  if (error) throw Error(path + ": cannot create its directory: " + error.message());
  const std::string tmp = temp_path_for(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(system_error(path, "cannot write"));
  try {
    write_all_and_close(fd, text, path);
    if (::rename(tmp.c_str(), path.c_str()) != 0) throw Error(system_error(path, "cannot rename"));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  sync_directory(parent.string());  // the rename itself survives a power loss
}

}  // namespace demix
