#pragma once

#include <stdexcept>
#include <string>

namespace demix {

// The one error type for bad input. Its message is a single line that names the file, key or value
// and what was expected; only cli/main.cpp catches it, prints it and exits non-zero.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace demix
