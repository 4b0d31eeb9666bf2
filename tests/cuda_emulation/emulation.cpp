#include "emulation.h"

#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace demix::cuda_emulation {

thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

namespace {

// A reusable barrier; a thread that returns from the kernel drops out of it, as an exited CUDA
// thread no longer takes part in __syncthreads.
class Barrier {
 public:
  explicit Barrier(int expected) : expected_(expected) {}
  void arrive_and_wait() {
    std::unique_lock lock(mutex_);
    const auto generation = generation_;
    if (++arrived_ == expected_) return release();
    released_.wait(lock, [&] { return generation != generation_; });
  }
  void arrive_and_drop() {
    std::unique_lock lock(mutex_);
    --expected_;
    if (expected_ > 0 && arrived_ == expected_) release();
  }

 private:
  void release() {
    arrived_ = 0;
    ++generation_;
    released_.notify_all();
  }
  std::mutex mutex_;
  std::condition_variable released_;
  int expected_, arrived_ = 0;
  int64_t generation_ = 0;
};

struct Warp {
  explicit Warp(int lanes) : barrier(lanes) {}
  Barrier barrier;
  float lanes[32] = {};
};

struct Block {
  explicit Block(int threads) : barrier(threads) {
    for (int first = 0; first < threads; first += 32)
      warps.push_back(std::make_unique<Warp>(std::min(32, threads - first)));
  }
  Barrier barrier;
  std::vector<std::unique_ptr<Warp>> warps;
};

thread_local Block* current_block = nullptr;
thread_local int linear_thread = 0;
cudaError_t last_error = cudaSuccess;

}  // namespace

void syncthreads() { current_block->barrier.arrive_and_wait(); }

float shfl_xor(float value, int lane_mask) {
  auto& warp = *current_block->warps[size_t(linear_thread / 32)];
  const int lane = linear_thread % 32;
  warp.lanes[lane] = value;
  warp.barrier.arrive_and_wait();
  const float other = warp.lanes[lane ^ lane_mask];
  warp.barrier.arrive_and_wait();  // nobody overwrites a lane before all have read
  return other;
}

void run_grid(dim3 blocks, dim3 threads, const std::function<void()>& body) {
  const int64_t per_block = int64_t(threads.x) * threads.y * threads.z;
  if (per_block == 0 || per_block > 1024 || threads.z > 64 || blocks.x == 0 || blocks.y == 0 ||
      blocks.z == 0 || blocks.y > 65535 || blocks.z > 65535 || blocks.x > 2147483647u) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  // One host thread per CUDA thread of a block, reused for every block: between blocks all meet
  // at `between`, and the first of them sets up the next block's barriers.
  const int64_t grid = int64_t(blocks.x) * blocks.y * blocks.z;
  std::unique_ptr<Block> block;
  Barrier between{int(per_block)};
  std::vector<std::thread> workers;
  for (int t = 0; t < int(per_block); ++t)
    workers.emplace_back([&, t] {
      threadIdx = {unsigned(t) % threads.x, unsigned(t) / threads.x % threads.y,
                   unsigned(t) / (threads.x * threads.y)};
      blockDim = threads;
      gridDim = blocks;
      linear_thread = t;
      for (int64_t b = 0; b < grid; ++b) {
        between.arrive_and_wait();  // the previous block is done
        if (t == 0) block = std::make_unique<Block>(int(per_block));
        between.arrive_and_wait();
        blockIdx = {unsigned(b % blocks.x), unsigned(b / blocks.x % blocks.y),
                    unsigned(b / (int64_t(blocks.x) * blocks.y))};
        current_block = block.get();
        body();
        block->warps[size_t(t / 32)]->barrier.arrive_and_drop();
        block->barrier.arrive_and_drop();
      }
    });
  for (auto& worker : workers) worker.join();
}

}  // namespace demix::cuda_emulation

// The CUDA runtime calls the kernels' launchers make, on host memory.
extern "C" {
cudaError_t cudaGetLastError(void) {
  const auto error = demix::cuda_emulation::last_error;
  demix::cuda_emulation::last_error = cudaSuccess;
  return error;
}
const char* cudaGetErrorString(cudaError_t error) {
  return error == cudaSuccess ? "no error" : "invalid launch configuration (emulated)";
}
cudaError_t cudaMemsetAsync(void* pointer, int value, size_t bytes, cudaStream_t) {
  std::memset(pointer, value, bytes);
  return cudaSuccess;
}
}
