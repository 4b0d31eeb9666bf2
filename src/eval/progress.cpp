#include "demix/eval/progress.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <utility>

namespace demix::eval {
namespace {

std::string duration(double seconds) {
  const auto s = int64_t(std::lround(seconds));
  return s >= 60 ? std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s"
                 : std::to_string(s) + "s";
}

}  // namespace

Progress::Progress(std::string label, int64_t total_blocks, double interval_seconds)
    : label_(std::move(label)), total_(total_blocks), interval_(interval_seconds) {}

void Progress::advance(int64_t blocks, int64_t tokens) {
  done_ += blocks;
  tokens_ += tokens;
  if (done_ >= total_) return;
  const auto now = Clock::now();
  if (std::chrono::duration<double>(now - last_log_).count() < interval_) return;
  last_log_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  // The mean rate since the start: steadier than the last batch's.
  const double left = elapsed / double(done_) * double(total_ - done_);
  spdlog::info("{} {}: {}/{} blocks, {:.0f} tokens/s, {} left", label_, stage_, done_, total_,
               double(tokens_) / elapsed, duration(left));
}

}  // namespace demix::eval
