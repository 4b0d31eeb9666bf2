#pragma once

// Training metrics go to two sinks: a progress line on stdout (spdlog) and one JSON object per
// line in <run>/metrics.jsonl, with namespaced keys: train/loss, train/domain/<name>/loss,
// val/domain/<name>/loss, perf/tokens_per_s, ...

#include <fstream>
#include <string>

#include "demix/core/json.h"

namespace demix::train {

class MetricsLog {
 public:
  explicit MetricsLog(const std::string& path);  // appends; a resumed run continues the file
  void write(const JsonObject& record);

 private:
  std::ofstream out_;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12s"

}  // namespace demix::train
