#include "demix/core/host_memory.h"

#if defined(__GLIBC__)
#include <malloc.h>

#include <climits>
#endif

namespace demix {

void keep_freed_host_memory() {
#if defined(__GLIBC__)
  // Large blocks from the heap instead of mmap, and no trimming of the heap's top: the peak
  // stays resident, which a training process reaches again on the next step anyway.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
#endif
}

}  // namespace demix
