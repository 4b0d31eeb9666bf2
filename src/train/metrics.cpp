#include "demix/train/metrics.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>

#include "demix/core/error.h"
#include "demix/core/file.h"

namespace demix::train {

namespace {

// The "step" of a metrics record (Trainer::log_step, validate); -1 for a line that is not one (a
// half-written last line, which is kept as it was).
int64_t record_step(const std::string& line) {
  const auto record = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  const auto step = record.is_object() ? record.find("step") : record.end();
  return step != record.end() && step->is_number_integer() ? step->get<int64_t>() : -1;
}

// Keeps the records up to `step`; returns how many were dropped.
size_t truncate_after(const std::string& path, int64_t step) {
  std::ifstream in(path);
  std::string line, kept;
  size_t dropped = 0;
  while (std::getline(in, line)) {
    if (record_step(line) > step)
      ++dropped;
    else
      kept += line + "\n";
  }
  if (dropped > 0) write_file_atomic(path, kept);
  return dropped;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, int64_t resume_step) {
  namespace fs = std::filesystem;
  fs::create_directories(fs::path(path).parent_path());
  if (fs::exists(path) && fs::file_size(path) > 0) {
    if (resume_step == 0) {
      fs::rename(path, path + ".prev");
      spdlog::warn("{}: a previous run's metrics moved to {}.prev (this run starts at step 0)",
                   path, path);
    } else if (const auto dropped = truncate_after(path, resume_step)) {
      spdlog::info("{}: dropped {} records after step {} (written after the last checkpoint)", path,
                   dropped, resume_step);
    }
  }
  out_.open(path, std::ios::app);
  if (!out_) throw Error(path + ": cannot open metrics file for writing");
}

void MetricsLog::write(const Json& record) {
  out_ << json_text(record) << '\n';
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
