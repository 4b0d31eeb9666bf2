#include "demix/train/metrics.h"

#include <cstdio>
#include <filesystem>

#include "demix/core/error.h"

namespace demix::train {

MetricsLog::MetricsLog(const std::string& path) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  out_.open(path, std::ios::app);
  if (!out_) throw Error(path + ": cannot open metrics file for writing");
}

void MetricsLog::write(const JsonObject& record) {
  out_ << record.str() << '\n';
  out_.flush();
}

std::string format_duration(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof(buf), "%llds", s);
  return buf;
}

}  // namespace demix::train
