// libFuzzer target: the config loader on arbitrary bytes. Bad input must end in demix::Error (the
// one-line error path); any other exception, a crash or a sanitizer report is a bug.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "demix/core/config.h"
#include "demix/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/demix_fuzz_config." + std::to_string(::getpid()) + ".yaml";
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), long(size));
  try {
    demix::load_config(path);
  } catch (const demix::Error&) {
  }
  return 0;
}
