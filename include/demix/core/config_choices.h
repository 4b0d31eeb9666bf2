#pragma once

// The config's choice keys as enum classes, apart from the config itself, so that code that only
// takes a choice (a kernel's GEMM library, the batcher's sampling) need not see the whole config.

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace demix {

// A key that is a choice among fixed spellings is an enum class E with one table,
// `choices(E)`, of {value, spelling} in the order the error message lists them. Reading,
// writing, error messages and log lines all go through that table: parse_choice<E>("dense"),
// to_string(FeedForward::kDense) == "dense", choice_list<E>() == "demix or dense".
template <class E>
struct ChoiceName {
  E value;
  const char* name;
};

template <class E, class = void>
struct is_choice : std::false_type {};
template <class E>
struct is_choice<E, std::void_t<decltype(choices(E{}))>> : std::true_type {};

template <class E, std::enable_if_t<is_choice<E>::value, int> = 0>
std::string to_string(E value) {
  for (const auto& c : choices(value))
    if (c.value == value) return c.name;
  return "?";
}

template <class E, std::enable_if_t<is_choice<E>::value, int> = 0>
std::optional<E> parse_choice(std::string_view name) {
  for (const auto& c : choices(E{}))
    if (name == c.name) return c.value;
  return std::nullopt;
}

// The allowed spellings as error messages list them: "a or b", "a, b or c".
template <class E, std::enable_if_t<is_choice<E>::value, int> = 0>
std::string choice_list() {
  const auto table = choices(E{});
  std::string out;
  for (size_t i = 0; i < table.size(); ++i)
    out += std::string(i == 0 ? "" : i + 1 == table.size() ? " or " : ", ") + table[i].name;
  return out;
}

#define DEMIX_CHOICES(E, N) constexpr std::array<ChoiceName<E>, N> choices(E)

// model.ff
enum class FeedForward { kDemix, kDense };
DEMIX_CHOICES(FeedForward, 2) {
  return {{{FeedForward::kDemix, "demix"}, {FeedForward::kDense, "dense"}}};
}

// model.expert_scope
enum class ExpertScope { kFf, kBlock };
DEMIX_CHOICES(ExpertScope, 2) {
  return {{{ExpertScope::kFf, "ff"}, {ExpertScope::kBlock, "block"}}};
}

// data.sampling
enum class DataSampling { kBalanced, kNatural };
DEMIX_CHOICES(DataSampling, 2) {
  return {{{DataSampling::kBalanced, "balanced"}, {DataSampling::kNatural, "natural"}}};
}

// data.sources[].format
enum class SourceFormat { kJsonl, kTextDir };
DEMIX_CHOICES(SourceFormat, 2) {
  return {{{SourceFormat::kJsonl, "jsonl"}, {SourceFormat::kTextDir, "text_dir"}}};
}

// data.sources[].split
enum class SourceSplit { kHash, kTrain, kValid, kTest };
DEMIX_CHOICES(SourceSplit, 4) {
  return {{{SourceSplit::kHash, "hash"},
           {SourceSplit::kTrain, "train"},
           {SourceSplit::kValid, "valid"},
           {SourceSplit::kTest, "test"}}};
}

// tokenizer.type
enum class TokenizerType { kBpe, kUnigram };
DEMIX_CHOICES(TokenizerType, 2) {
  return {{{TokenizerType::kBpe, "bpe"}, {TokenizerType::kUnigram, "unigram"}}};
}

// optim.schedule
enum class LrShape { kCosine, kLinear, kPoly };
DEMIX_CHOICES(LrShape, 3) {
  return {{{LrShape::kCosine, "cosine"}, {LrShape::kLinear, "linear"}, {LrShape::kPoly, "poly"}}};
}

// train.cpu_gemm
enum class CpuGemmChoice { kAuto, kAten, kOpenblas };
DEMIX_CHOICES(CpuGemmChoice, 3) {
  return {{{CpuGemmChoice::kAuto, "auto"},
           {CpuGemmChoice::kAten, "aten"},
           {CpuGemmChoice::kOpenblas, "openblas"}}};
}

// train.precision
enum class Precision { kFp32, kBf16 };
DEMIX_CHOICES(Precision, 2) { return {{{Precision::kFp32, "fp32"}, {Precision::kBf16, "bf16"}}}; }

// train.trainable
enum class Trainable { kAll, kExperts, kFf };
DEMIX_CHOICES(Trainable, 3) {
  return {{{Trainable::kAll, "all"}, {Trainable::kExperts, "experts"}, {Trainable::kFf, "ff"}}};
}

// train.nonfinite
enum class NonFinite { kSkip, kStop };
DEMIX_CHOICES(NonFinite, 2) { return {{{NonFinite::kSkip, "skip"}, {NonFinite::kStop, "stop"}}}; }

// eval.prior
enum class EvalPrior { kUniform, kUpdating, kCached };
DEMIX_CHOICES(EvalPrior, 3) {
  return {{{EvalPrior::kUniform, "uniform"},
           {EvalPrior::kUpdating, "updating"},
           {EvalPrior::kCached, "cached"}}};
}

// cluster.balance
enum class ClusterBalance { kDocuments, kTokens };
DEMIX_CHOICES(ClusterBalance, 2) {
  return {{{ClusterBalance::kDocuments, "documents"}, {ClusterBalance::kTokens, "tokens"}}};
}

// eval.posterior
enum class EvalPosterior { kPrefix, kLastToken };
DEMIX_CHOICES(EvalPosterior, 2) {
  return {{{EvalPosterior::kPrefix, "prefix"}, {EvalPosterior::kLastToken, "last_token"}}};
}

// dist.backend
enum class DistBackend { kAuto, kGloo, kNccl };
DEMIX_CHOICES(DistBackend, 3) {
  return {
      {{DistBackend::kAuto, "auto"}, {DistBackend::kGloo, "gloo"}, {DistBackend::kNccl, "nccl"}}};
}

// adapt.init
enum class AdaptInit { kClosest, kMerge };
DEMIX_CHOICES(AdaptInit, 2) {
  return {{{AdaptInit::kClosest, "closest"}, {AdaptInit::kMerge, "merge"}}};
}

// mode.train
enum class ModeTrain { kGatesExperts, kGates };
DEMIX_CHOICES(ModeTrain, 2) {
  return {{{ModeTrain::kGatesExperts, "gates_experts"}, {ModeTrain::kGates, "gates"}}};
}

// mode.expert_init
enum class ExpertInit { kBackbone, kRandom };
DEMIX_CHOICES(ExpertInit, 2) {
  return {{{ExpertInit::kBackbone, "backbone"}, {ExpertInit::kRandom, "random"}}};
}

// mode.placement
enum class ModePlacement { kDataParallel, kBranches };
DEMIX_CHOICES(ModePlacement, 2) {
  return {
      {{ModePlacement::kDataParallel, "data_parallel"}, {ModePlacement::kBranches, "branches"}}};
}

#undef DEMIX_CHOICES

}  // namespace demix
