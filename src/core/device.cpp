#include "demix/core/device.h"

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

}  // namespace demix
