#pragma once

// Progress of a long evaluation on stderr (spdlog): the part being scored, blocks done of the
// total, tokens per second and the time left, at most once per interval so that logs stay short.
// One object spans a whole command (every domain and variant), so that its ETA covers it all.

#include <chrono>
#include <cstdint>
#include <string>

namespace demix::eval {

class Progress {
 public:
  Progress(std::string label, int64_t total_blocks, double interval_seconds = 10);
  void stage(std::string name) { stage_ = std::move(name); }  // the part now being scored
  void advance(int64_t blocks, int64_t tokens);               // after each batch

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_, stage_;
  int64_t total_, done_ = 0, tokens_ = 0;
  double interval_;
  Clock::time_point start_ = Clock::now(), last_log_ = start_;
};

}  // namespace demix::eval
