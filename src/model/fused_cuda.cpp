#include "demix/model/fused_cuda.h"

#include <atomic>

namespace demix::model {
namespace {

std::atomic<bool> fused_cuda{false};

}  // namespace

void set_fused_cuda_kernels(bool on) { fused_cuda.store(on); }

bool fused_cuda_kernels() { return fused_cuda.load(); }

}  // namespace demix::model
