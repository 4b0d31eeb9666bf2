#pragma once

// Experts as modules of a checkpoint (DEMix paper, sec. 6): list them, remove one, add one trained
// elsewhere on the same shared parameters, or merge several into a new one by a weighted
// parameter average (as Branch-Train-Merge initialises new experts). Each operation writes a
// new checkpoint directory, built under a temporary name and renamed when complete; the source
// is never touched, and on any error nothing is written.

#include <cstdint>
#include <string>
#include <vector>

namespace demix {
struct Config;
}

namespace demix::checkpoint {

struct ExpertInfo {
  std::string domain;
  int64_t parameters = 0;
  int64_t bytes = 0;  // of its parameter file
  int64_t steps = 0;  // optimizer steps it has taken (Adam's step count)
};

std::vector<ExpertInfo> list_experts(const std::string& checkpoint);

// The index of `domain`'s expert in config.data.domains; throws Error naming `checkpoint` and its
// experts when it has none.
int64_t expert_index(const Config& config, const std::string& checkpoint,
                     const std::string& domain);

// A hash of the shared parameters' bytes: checkpoints whose experts can be exchanged agree on it.
uint64_t shared_fingerprint(const std::string& checkpoint);

// `domain` leaves data.domains (and joins data.eval_domains, so mixing still evaluates it).
void remove_expert(const std::string& checkpoint, const std::string& domain,
                   const std::string& out);

// Appends `domain`'s expert (and its optimizer state) from `from`, whose shared parameters must
// have the same fingerprint.
void add_expert(const std::string& checkpoint, const std::string& from, const std::string& domain,
                const std::string& out);

// Appends a new expert `as` = sum_i weights[i] * expert(domains[i]) / sum(weights), with a fresh
// (zero) optimizer state.
void merge_experts(const std::string& checkpoint, const std::vector<std::string>& domains,
                   const std::vector<double>& weights, const std::string& as,
                   const std::string& out);

}  // namespace demix::checkpoint
