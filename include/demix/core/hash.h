#pragma once

// Counter-based randomness: every random choice in demix is a pure function of (seed, what, index),
// so a run is reproducible from its seed and a cursor, whatever the placement or resume point.

#include <cstdint>
#include <string_view>

namespace demix {

// splitmix64's finaliser: a bijective 64-bit mix with good avalanche.
constexpr uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr uint64_t hash_combine(uint64_t seed, uint64_t value) {
  return mix64(seed ^ mix64(value));
}

constexpr uint64_t hash_string(uint64_t seed, std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then mixed with the seed
  for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ULL;
  return hash_combine(seed, h);
}

}  // namespace demix
