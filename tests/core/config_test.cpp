#include "demix/core/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

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
