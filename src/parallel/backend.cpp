// The only translation unit that includes the c10d backend headers: Gloo's come from Debian's
// libgloo-dev (the torch wheel ships none), so a header mismatch can only break this file.

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "demix/core/error.h"
#include "demix/parallel/process_groups.h"

namespace demix::parallel {

Group make_group(const std::string& kind, const c10::intrusive_ptr<c10d::Store>& store, int rank,
                 int size, std::chrono::milliseconds timeout) {
  if (kind == "gloo") {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
  }
  if (kind == "nccl") {
#ifdef USE_C10D_NCCL
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
#else
    throw Error(
        "dist.backend=nccl: this build has no NCCL (configure with CUDA and USE_C10D_NCCL)");
#endif
  }
  throw Error("dist.backend=" + kind + ": expected gloo or nccl");
}

}  // namespace demix::parallel
