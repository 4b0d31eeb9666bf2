#include "demix/core/device.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>

#ifdef DEMIX_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "demix/core/error.h"

namespace demix {

c10::Device resolve_device(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error("train.device=" + name + ": no CUDA device is available here (use cpu)");
    const c10::Device device(name);
    if (device.index() >= int(torch::cuda::device_count()))
      throw Error("train.device=" + name + ": only " + std::to_string(torch::cuda::device_count()) +
                  " CUDA devices");
    return device;
  }
  throw Error("train.device=" + name + ": expected cpu, cuda or cuda:N");
}

at::Tensor to_device(const at::Tensor& host, const c10::Device& device) {
  if (!device.is_cuda()) return host.to(device);
  // The caching host allocator keeps the pinned block until the queued copy has run.
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

int64_t peak_device_memory_bytes([[maybe_unused]] const c10::Device& device) {
#ifdef DEMIX_CUDA
  if (device.is_cuda()) {
    namespace allocator = c10::cuda::CUDACachingAllocator;
    const auto stats = allocator::getDeviceStats(device.has_index() ? device.index() : 0);
    return stats.allocated_bytes[size_t(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  }
#endif
  return 0;
}

void reset_peak_device_memory([[maybe_unused]] const c10::Device& device) {
#ifdef DEMIX_CUDA
  if (device.is_cuda())
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : 0);
#endif
}

void release_cached_device_memory([[maybe_unused]] const c10::Device& device) {
#ifdef DEMIX_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

}  // namespace demix
