#include "demix/core/memory_budget.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#ifdef DEMIX_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include "demix/core/error.h"

namespace demix {
namespace {

uint64_t meminfo_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  while (in >> key >> kib) {
    if (key == "MemAvailable:") return kib << 10;
    in.ignore(256, '\n');
  }
  return 0;
}

uint64_t cgroup_remaining() {  // cgroup v2: memory.max - memory.current
  std::ifstream max_file("/sys/fs/cgroup/memory.max"),
      current_file("/sys/fs/cgroup/memory.current");
  std::string max;
  uint64_t current = 0;
  if (!(max_file >> max) || max == "max" || !(current_file >> current)) return UINT64_MAX;
  const uint64_t limit = std::stoull(max);
  return limit > current ? limit - current : 0;
}

std::string gigabytes(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f GB", double(bytes) / 1e9);
  return text;
}

}  // namespace

uint64_t available_memory_bytes(const c10::Device& device) {
#ifdef DEMIX_CUDA
  if (device.is_cuda())
    return at::cuda::getDeviceProperties(device.has_index() ? device.index() : 0)->totalGlobalMem;
#endif
  if (!device.is_cpu()) return 0;
  uint64_t available = std::min(meminfo_available(), cgroup_remaining());
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    available = std::min<uint64_t>(available, limit.rlim_cur);
  return available;
}

void require_memory(uint64_t bytes, const c10::Device& device, const std::string& what) {
  const auto available = available_memory_bytes(device);
  if (available > 0 && bytes > available)
    throw Error(what + ": needs at least " + gigabytes(bytes) + ", but " + gigabytes(available) +
                " of memory is available on " + device.str());
}

}  // namespace demix
