#include "demix/core/csv.h"

#include <cstdio>

namespace demix {
namespace {

std::string cell(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (const char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

std::string csv_table(const std::string& corner, const std::vector<std::string>& columns,
                      const std::vector<std::string>& labels,
                      const std::vector<std::vector<double>>& values) {
  std::string out = cell(corner);
  for (const auto& column : columns) out += "," + cell(column);
  out += "\n";
  char number[64];
  for (size_t i = 0; i < labels.size(); ++i) {
    out += cell(labels[i]);
    for (const double v : values[i]) {
      std::snprintf(number, sizeof(number), ",%.6f", v);
      out += number;
    }
    out += "\n";
  }
  return out;
}

}  // namespace demix
