#pragma once

namespace demix {

// Makes glibc keep freed host memory for reuse instead of handing it back to the kernel. Called
// once, first thing in main. A training step allocates the same large tensors every time (the
// (tokens, vocab) logits and their log-probabilities are 64 MB each in the tiny config); by
// default glibc serves each from a fresh mmap and unmaps it on free, so every step page-faults
// and zero-fills them again (docs/performance.md has the cost).
void keep_freed_host_memory();

// The same policy as a GLIBC_TUNABLES value, for a child process we compare against (the bench's
// PyTorch reference), so that a speed ratio measures the frameworks and not the allocator.
inline constexpr const char* kKeepFreedHostMemoryTunables =
    "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647";

}  // namespace demix
