#pragma once

// Training metrics go to two sinks: a progress line on stdout (spdlog) and one JSON object per
// line in <run>/metrics.jsonl, with namespaced keys: train/loss, train/domain/<name>/loss,
// val/domain/<name>/loss, perf/tokens_per_s, ...

#include <cstdint>
#include <fstream>
#include <string>

#include "demix/core/json.h"

namespace demix::train {

class MetricsLog {
 public:
  // A run resumed at `resume_step` continues the file without the records of later steps (those
  // of an interrupted run after its last checkpoint); a run starting at step 0 moves an existing
  // file aside to `<path>.prev`. Either is logged.
  MetricsLog(const std::string& path, int64_t resume_step);
  void write(const Json& record);  // one compact line

 private:
  std::ofstream out_;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12s"

}  // namespace demix::train
