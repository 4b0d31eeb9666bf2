#include "demix/core/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "demix/core/error.h"

namespace demix {
namespace {

// ctest runs each test as its own process, several at once: each test writes its own files.
std::string write_yaml(const std::string& name, const std::string& text) {
  const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  const auto dir = std::filesystem::temp_directory_path() / ("demix_config_test." + test);
  std::filesystem::create_directories(dir);
  const auto path = (dir / name).string();
  std::ofstream(path) << text;
  return path;
}

const char* kMinimal = "data:\n  domains: [a, b]\n";

void expect_error(const std::string& yaml, const std::vector<std::string>& overrides,
                  const std::string& fragment) {
  const auto path = write_yaml("demix_config_test.yaml", yaml);
  try {
    load_config(path, overrides);
    FAIL() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "error must be one line: " << message;
    const bool names_source = message.find(path) != std::string::npos ||
                              message.rfind("--set ", 0) == 0;  // a bad --set names itself
    EXPECT_TRUE(names_source) << "error must name the file or the --set: " << message;
  }
}

TEST(ConfigTest, LoadsValuesAndDefaults) {
  const auto path = write_yaml("demix_ok.yaml",
                               "model:\n  d_model: 64\n  n_head: 2\ndata:\n  domains: [x, y, z]\n"
                               "optim:\n  lr: 3.0e-4\n");
  const auto c = load_config(path);
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.model.n_head, 2);
  EXPECT_EQ(c.model.n_layer, ModelConfig{}.n_layer);
  EXPECT_EQ(c.data.domains, (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_DOUBLE_EQ(c.optim.lr, 3e-4);
  EXPECT_EQ(c.n_experts(), 3);
  EXPECT_EQ(c.d_ff(), 256);
}

TEST(ConfigTest, OverridesWinOverTheFile) {
  const auto path = write_yaml("demix_ovr.yaml", std::string(kMinimal) + "optim:\n  lr: 0.1\n");
  const auto c = load_config(path, {"optim.lr=0.002", "model.ff=dense", "data.domains=[p, q]"});
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.002);
  EXPECT_EQ(c.model.ff, FeedForward::kDense);
  EXPECT_EQ(c.data.domains, (std::vector<std::string>{"p", "q"}));
  EXPECT_EQ(c.n_experts(), 0);
}

TEST(ConfigTest, RoundTripsThroughYaml) {
  auto c = load_config(write_yaml("demix_rt.yaml", kMinimal),
                       {"optim.lr=0.00123456789", "model.demix_layers=[1, 3]", "train.seed=99"});
  const auto again = load_config(write_yaml("demix_rt2.yaml", to_yaml(c)));
  EXPECT_EQ(to_yaml(again), to_yaml(c));
  EXPECT_EQ(again.optim.lr, 0.00123456789);
  EXPECT_EQ(again.model.demix_layers, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(again.train.seed, 99u);
}

// data.sources: a list of maps, each read like a section and named by its index in errors.
TEST(ConfigTest, SourcesRoundTripAndNameTheirBadKeys) {
  const auto c = load_config(
      write_yaml("demix_sources.yaml",
                 std::string(kMinimal) +
                     "  sources:\n"
                     "    - {format: jsonl, paths: [x/*.jsonl.zst, y.jsonl], domain_field: meta.d}\n"
                     "    - {format: jsonl, paths: [z.gz], domain: a, split: test, text_field: "
                     "body.text}\n"
                     "    - {format: text_dir, paths: [corpus]}\n"));
  ASSERT_EQ(c.data.sources.size(), 3u);
  EXPECT_EQ(c.data.sources[0].paths, (std::vector<std::string>{"x/*.jsonl.zst", "y.jsonl"}));
  EXPECT_EQ(c.data.sources[0].domain_field, "meta.d");
  EXPECT_EQ(c.data.sources[1].split, SourceSplit::kTest);
  EXPECT_EQ(c.data.sources[1].text_field, "body.text");
  EXPECT_EQ(c.data.sources[2].format, SourceFormat::kTextDir);
  const auto again = load_config(write_yaml("demix_sources2.yaml", to_yaml(c)));
  EXPECT_EQ(to_yaml(again), to_yaml(c));
  ASSERT_EQ(again.data.sources.size(), 3u);
  EXPECT_EQ(again.data.sources[1].domain, "a");

  const std::string head = std::string(kMinimal) + "  sources:\n";
  expect_error(head + "    - {format: jsonl, paths: [a], domain: a, colour: red}\n", {},
               "data.sources[0].colour: unknown key");
  expect_error(head + "    - {format: xml, paths: [a], domain: a}\n", {},
               "data.sources[0].format=xml: expected jsonl or text_dir");
  expect_error(head + "    - {format: jsonl, paths: [a], domain: a}\n    - 3\n", {},
               "data.sources[1]: expected a map of keys");
  expect_error(head + "    - {format: jsonl, paths: [a]}\n", {},
               "data.sources[0]: expected exactly one of domain_field");
  expect_error(head + "    - {format: jsonl, paths: [], domain: a}\n", {},
               "data.sources[0].paths: expected at least one file or glob");
  expect_error(head + "    - {format: text_dir, paths: [a, b]}\n", {},
               "data.sources[0].paths: text_dir expects exactly one directory");
  expect_error(kMinimal, {"data.valid_fraction=0.6", "data.test_fraction=0.5"},
               "data.valid_fraction + data.test_fraction: expected < 1");
  expect_error(kMinimal, {"data.domains=[a, ../b]"}, "'../b': expected a name usable as a folder");
}

TEST(ConfigTest, BaseFileIsLayeredUnder) {
  write_yaml("demix_base.yaml", "data:\n  domains: [a, b]\nmodel:\n  d_model: 64\n  n_head: 4\n");
  const auto path = write_yaml("demix_child.yaml", "base: demix_base.yaml\nmodel:\n  n_head: 8\n");
  const auto c = load_config(path);
  EXPECT_EQ(c.model.d_model, 64);  // from the base
  EXPECT_EQ(c.model.n_head, 8);    // the child wins
  EXPECT_EQ(c.data.domains.size(), 2u);
}

TEST(ConfigTest, RejectsUnknownKey) {
  expect_error(kMinimal, {"optim.lrr=1"}, "optim.lrr: unknown key");
}
TEST(ConfigTest, RejectsUnknownSection) {
  expect_error(std::string(kMinimal) + "optimizer:\n  lr: 1\n", {}, "optimizer: unknown section");
}
TEST(ConfigTest, RejectsWrongType) {
  expect_error(std::string(kMinimal) + "model:\n  d_model: wide\n", {},
               "model.d_model: expected an integer");
}
TEST(ConfigTest, RejectsListWhereScalarExpected) {
  expect_error(std::string(kMinimal) + "optim:\n  lr: [1, 2]\n", {}, "optim.lr: expected a number");
}
TEST(ConfigTest, RejectsIndivisibleHeads) {
  expect_error(kMinimal, {"model.d_model=100", "model.n_head=3"},
               "model.d_model=100 is not divisible by model.n_head=3");
}
TEST(ConfigTest, AcceptsWarmupBeyondStepsButNotNegative) {
  // A warm-up longer than a short run is capped by the schedule (lr_schedule_test.cpp).
  const auto path = write_yaml("demix_warmup.yaml", kMinimal);
  EXPECT_EQ(load_config(path, {"train.steps=10", "optim.warmup_steps=50"}).optim.warmup_steps, 50);
  expect_error(kMinimal, {"optim.warmup_steps=-1"}, "optim.warmup_steps: expected >= 0");
}
TEST(ConfigTest, RejectsNonFiniteNumbers) {
  expect_error(kMinimal, {"optim.lr=.inf"}, "optim.lr: expected a finite number, got '.inf'");
  expect_error(std::string(kMinimal) + "eval:\n  alpha: .nan\n", {},
               "eval.alpha: expected a finite");
  expect_error(kMinimal, {"optim.grad_clip=-.inf"}, "optim.grad_clip: expected a finite");
}
TEST(ConfigTest, RejectsAKeyGivenTwice) {
  expect_error(std::string(kMinimal) + "optim:\n  lr: 0.1\n  lr: 0.2\n", {},
               ":5: optim.lr is given twice");
  expect_error(std::string(kMinimal) + "optim: {lr: 0.1}\noptim: {eps: 1.0e-6}\n", {},
               "optim is given twice");
}
TEST(ConfigTest, RejectsUnknownFfKind) {
  expect_error(kMinimal, {"model.ff=moe"}, "model.ff=moe: expected demix or dense");
}
TEST(ConfigTest, RejectsDuplicateDomain) {
  expect_error("data:\n  domains: [a, a]\n", {}, "data.domains lists 'a' twice");
}
TEST(ConfigTest, RejectsNoDomains) {
  expect_error("model:\n  d_model: 64\n", {}, "data.domains: expected at least one");
}
TEST(ConfigTest, RejectsDemixLayerOutOfRange) {
  expect_error(kMinimal, {"model.n_layer=2", "model.demix_layers=[0, 2]"},
               "model.demix_layers has 2");
}
TEST(ConfigTest, RejectsNaturalSamplingForDemix) {
  expect_error(kMinimal, {"data.sampling=natural"}, "data.sampling=natural needs model.ff=dense");
}
TEST(ConfigTest, RejectsNegativeSteps) {
  expect_error(kMinimal, {"train.steps=-1"}, "train.steps=-1: expected > 0");
}
TEST(ConfigTest, RejectsMalformedOverride) {
  expect_error(kMinimal, {"optim.lr"}, "--set optim.lr: expected section.key=value");
}

TEST(ConfigTest, RejectsTrainDomainOutsideTheDomains) {
  expect_error(kMinimal, {"train.train_domains=[c]"},
               "train.train_domains has 'c': expected one of data.domains");
}
TEST(ConfigTest, RejectsExpertOnlyTrainingOfADenseModel) {
  expect_error(kMinimal, {"model.ff=dense", "train.trainable=experts"},
               "train.trainable=experts needs model.ff=demix");
}
TEST(ConfigTest, RejectsUnknownCpuGemm) {
  expect_error(kMinimal, {"train.cpu_gemm=mkl"},
               "train.cpu_gemm=mkl: expected auto, aten or openblas");
}
TEST(ConfigTest, RejectsUnknownAdaptInit) {
  expect_error(kMinimal, {"adapt.init=random"}, "adapt.init=random: expected closest or merge");
}

// Every choice key: its enum's table against the spellings the config has always used.
template <class E>
void expect_choice_table_round_trips() {
  const auto table = choices(E{});
  std::set<std::string> names;
  std::set<int> values;
  for (const auto& c : table) {
    EXPECT_EQ(parse_choice<E>(to_string(c.value)), c.value) << c.name;
    EXPECT_EQ(to_string(c.value), c.name);
    EXPECT_TRUE(names.insert(c.name).second) << "spelled twice: " << c.name;
    EXPECT_TRUE(values.insert(int(c.value)).second) << "listed twice: " << c.name;
    EXPECT_LT(int(c.value), int(table.size())) << c.name;  // every enumerator 0..N-1 named
  }
  EXPECT_FALSE(parse_choice<E>("no_such_choice").has_value());
  EXPECT_FALSE(parse_choice<E>("").has_value());
}

TEST(ConfigTest, ChoiceTablesRoundTrip) {
  expect_choice_table_round_trips<FeedForward>();
  expect_choice_table_round_trips<ExpertScope>();
  expect_choice_table_round_trips<DataSampling>();
  expect_choice_table_round_trips<TokenizerType>();
  expect_choice_table_round_trips<LrShape>();
  expect_choice_table_round_trips<CpuGemmChoice>();
  expect_choice_table_round_trips<Precision>();
  expect_choice_table_round_trips<Trainable>();
  expect_choice_table_round_trips<NonFinite>();
  expect_choice_table_round_trips<EvalPrior>();
  expect_choice_table_round_trips<EvalPosterior>();
  expect_choice_table_round_trips<DistBackend>();
  expect_choice_table_round_trips<AdaptInit>();
  expect_choice_table_round_trips<ModeTrain>();
  expect_choice_table_round_trips<ExpertInit>();
  expect_choice_table_round_trips<ModePlacement>();
}

struct ChoiceKey {
  std::string key;                   // section.key
  std::string fallback;              // the default, as config.yaml spells it
  std::vector<std::string> allowed;  // in the order the error lists them
  std::string expected;              // the error's tail, as the string-typed config gave it
  std::vector<std::string> needs;    // overrides some spellings need to pass validation
};

const std::vector<ChoiceKey> kChoiceKeys = {
    {"model.ff", "demix", {"demix", "dense"}, "expected demix or dense", {}},
    {"model.expert_scope", "ff", {"ff", "block"}, "expected ff or block", {}},
    {"data.sampling",
     "balanced",
     {"balanced", "natural"},
     "expected balanced or natural",
     {"model.ff=dense"}},
    {"tokenizer.type", "bpe", {"bpe", "unigram"}, "expected bpe or unigram", {}},
    {"optim.schedule",
     "cosine",
     {"cosine", "linear", "poly"},
     "expected cosine, linear or poly",
     {}},
    {"train.cpu_gemm", "auto", {"auto", "aten", "openblas"}, "expected auto, aten or openblas", {}},
    {"train.precision", "fp32", {"fp32", "bf16"}, "expected fp32 or bf16", {}},
    {"train.trainable", "all", {"all", "experts", "ff"}, "expected all, experts or ff", {}},
    {"train.nonfinite", "skip", {"skip", "stop"}, "expected skip or stop", {}},
    {"eval.prior",
     "uniform",
     {"uniform", "updating", "cached"},
     "expected uniform, updating or cached",
     {}},
    {"eval.posterior", "prefix", {"prefix", "last_token"}, "expected prefix or last_token", {}},
    {"dist.backend", "auto", {"auto", "gloo", "nccl"}, "expected auto, gloo or nccl", {}},
    {"adapt.init", "closest", {"closest", "merge"}, "expected closest or merge", {}},
    {"mode.train",
     "gates_experts",
     {"gates_experts", "gates"},
     "expected gates_experts or gates",
     {}},
    {"mode.expert_init", "backbone", {"backbone", "random"}, "expected backbone or random", {}},
    {"mode.placement",
     "data_parallel",
     {"data_parallel", "branches"},
     "expected data_parallel or branches",
     {}},
};

std::string yaml_line(const std::string& key, const std::string& value) {
  return "\n  " + key.substr(key.find('.') + 1) + ": " + value + "\n";
}

TEST(ConfigTest, ChoiceKeysKeepTheirSpellingsAndErrors) {
  const auto defaults = to_yaml(Config{});
  for (const auto& k : kChoiceKeys) {
    SCOPED_TRACE(k.key);
    EXPECT_NE(defaults.find(yaml_line(k.key, k.fallback)), std::string::npos) << defaults;
    for (const auto& value : k.allowed) {  // read, written back and read again unchanged
      auto overrides = k.needs;
      overrides.push_back(k.key + "=" + value);
      const auto c = load_config(write_yaml("demix_choice.yaml", kMinimal), overrides);
      const auto yaml = to_yaml(c);
      EXPECT_NE(yaml.find(yaml_line(k.key, value)), std::string::npos) << value << "\n" << yaml;
      EXPECT_EQ(to_yaml(load_config(write_yaml("demix_choice2.yaml", yaml))), yaml) << value;
    }
    expect_error(kMinimal, {k.key + "=bogus"}, k.key + "=bogus: " + k.expected);
  }
}

// An unknown spelling is reported where its rule always was: an earlier broken rule still wins.
TEST(ConfigTest, UnknownChoiceKeepsTheOrderOfTheRules) {
  expect_error(kMinimal, {"model.vocab_size=0", "model.ff=moe"},
               "model.vocab_size=0: expected > 0");
  expect_error("", {"train.cpu_gemm=mkl"}, "data.domains: expected at least one training domain");
  expect_error(kMinimal, {"train.trainable=most", "model.ff=moe"},
               "model.ff=moe: expected demix or dense");
}

// The MoDE choices are checked with MoDE off too (an enum holds no unknown spelling).
TEST(ConfigTest, RejectsUnknownModeChoiceWithModeOff) {
  expect_error(kMinimal, {"mode.placement=everywhere"},
               "mode.placement=everywhere: expected data_parallel or branches");
}

TEST(ConfigTest, ChoiceToStringForMessages) {
  EXPECT_EQ(to_string(FeedForward::kDense), "dense");
  EXPECT_EQ(to_string(EvalPosterior::kLastToken), "last_token");
  EXPECT_EQ(choice_list<LrShape>(), "cosine, linear or poly");
  EXPECT_EQ(choice_list<FeedForward>(), "demix or dense");
}

// Found by fuzzing (scripts/fuzz.sh): yaml-cpp's own exceptions escaped the loader.
TEST(ConfigTest, RejectsNonScalarKeysAsAConfigError) {
  expect_error("[in]: te}\nvocab_model", {}, "unexpected YAML");
  expect_error("model: {[1, 2]: 3}\ndata: {domains: [a]}\n", {}, "");
  expect_error("base: .\n", {}, "is not a config file");  // a directory
}

TEST(ConfigTest, RejectsMissingFile) {
  try {
    load_config("/nonexistent/demix.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/demix.yaml: cannot open config file");
  }
}

}  // namespace
}  // namespace demix
