// libFuzzer target: the checkpoint readers on arbitrary bytes. The first byte picks the reader:
// even, a safetensors file (load_safetensors); odd, a checkpoint's manifest.json (Manifest, then
// its size checks against the files beside it). Bad input must end in demix::Error.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "demix/core/error.h"
#include "demix/core/manifest.h"
#include "demix/core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const auto dir = std::filesystem::temp_directory_path() /
                          ("demix_fuzz_checkpoint." + std::to_string(::getpid()));
  static const bool made = std::filesystem::create_directories(dir) || true;
  (void)made;
  const bool manifest = data[0] & 1;
  const auto path = dir / (manifest ? "manifest.json" : "shared.safetensors");
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(data + 1), long(size - 1));
  try {
    if (manifest)
      demix::Manifest(dir.string()).check_sizes();
    else
      demix::load_safetensors(path.string());
  } catch (const demix::Error&) {
  }
  return 0;
}
