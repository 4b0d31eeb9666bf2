#pragma once

// Names in error messages and metadata.

#include <string>
#include <vector>

namespace demix {

// "a,b,c": the items joined by commas, in order.
inline std::string comma_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

}  // namespace demix
