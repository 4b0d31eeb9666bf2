#include "demix/train/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "demix/core/error.h"
#include "demix/core/manifest.h"
#include "demix/train/optimizer.h"
#include "support/small_config.h"

namespace demix::train {
namespace {

using test_support::small_config;

std::vector<std::pair<std::string, at::Tensor>> named(model::GptImpl& m) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : m.named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

TEST(CheckpointTest, SaveLoadIsBitExact) {
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_test").string();
  std::filesystem::remove_all(run);
  const auto config = small_config();
  model::Gpt a(model::GptConfig::from(config), 1);
  AdamW opt_a(named(*a), config.optim);
  torch::manual_seed(0);
  const auto x = torch::randint(0, 40, {3, 8}), y = torch::randint(0, 40, {3, 8});
  a->loss(x, y, model::Routing({0, 1, 2}, torch::kCPU)).backward();
  opt_a.step(1e-2);
  const auto dir = save_checkpoint(run, *a, &opt_a, config, {1, 42}, 2);

  EXPECT_TRUE(std::filesystem::exists(dir + "/experts/beta.safetensors"));
  EXPECT_EQ(resolve_checkpoint(run), dir);
  model::Gpt b(model::GptConfig::from(config), /*seed=*/999);
  AdamW opt_b(named(*b), config.optim);
  load_model(dir, *b);
  load_optimizer(dir, opt_b);
  const auto pb = b->named_parameters();
  for (const auto& item : a->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  const auto sa = opt_a.state(), sb = opt_b.state();
  for (const auto& [k, v] : sa) EXPECT_TRUE(torch::equal(v, sb.at(k))) << k;
  EXPECT_EQ(checkpoint_state(dir).step, 1);
  EXPECT_EQ(checkpoint_state(dir).data_cursor, 42u);
  EXPECT_EQ(to_yaml(checkpoint_config(dir)), to_yaml(config));
}

TEST(CheckpointTest, ExpertFilesHoldOnlyTheirExpert) {
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_split").string();
  std::filesystem::remove_all(run);
  const auto config = small_config();
  model::Gpt m(model::GptConfig::from(config), 2);
  const auto dir = save_checkpoint(run, *m, nullptr, config, {}, 1);
  const auto gamma = load_safetensors(dir + "/experts/gamma.safetensors");
  EXPECT_EQ(gamma.size(), 2u * 4u);  // 2 layers x fc1/fc2 weight+bias
  EXPECT_TRUE(torch::equal(gamma.at("blocks.1.ff.fc2.bias"),
                           m->named_parameters()["blocks.1.ff.experts.2.fc2.bias"]));
  const auto shared = load_safetensors(dir + "/shared.safetensors");
  for (const auto& [name, t] : shared) EXPECT_EQ(name.find("experts"), std::string::npos) << name;
  EXPECT_TRUE(shared.count("wte.weight"));
}

TEST(CheckpointTest, KeepsTheNewestN) {
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_keep").string();
  std::filesystem::remove_all(run);
  const auto config = small_config();
  model::Gpt m(model::GptConfig::from(config), 2);
  for (int64_t step : {1, 2, 3}) save_checkpoint(run, *m, nullptr, config, {step, 0}, 2);
  EXPECT_FALSE(std::filesystem::exists(run + "/checkpoints/step_00000001"));
  EXPECT_TRUE(std::filesystem::exists(run + "/checkpoints/step_00000002"));
  EXPECT_EQ(checkpoint_state(resolve_checkpoint(run)).step, 3);
}

TEST(CheckpointTest, CorruptFileIsAClearError) {
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_corrupt").string();
  std::filesystem::remove_all(run);
  const auto config = small_config();
  model::Gpt m(model::GptConfig::from(config), 2);
  const auto dir = save_checkpoint(run, *m, nullptr, config, {}, 1);
  std::filesystem::resize_file(dir + "/shared.safetensors", 100);
  try {
    load_model(dir, *m);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shared.safetensors"), std::string::npos) << e.what();
  }
}

// Expects `f` to throw demix::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<const char*> parts) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const char* part : parts)
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A safetensors file whose header claims `shape` and `offsets` for one F32 tensor, with 12 data
// bytes: load_safetensors must refuse it with demix::Error before allocating anything (found by
// fuzzing: a negative dimension escaped as c10::Error; a huge one would allocate it).
TEST(SafetensorsTest, ImpossibleHeadersAreErrors) {
  const auto path = (std::filesystem::temp_directory_path() / "demix_bad.safetensors").string();
  for (const std::string& tensor :
       {R"("shape":[-3],"data_offsets":[0,12])", R"("shape":[1000000000000],"data_offsets":[0,12])",
        R"("shape":[4611686018427387904,4],"data_offsets":[0,12])",
        R"("shape":[3],"data_offsets":[12,0])",
        R"("shape":[3],"data_offsets":[18446744073709551615,11])"}) {
    const std::string header = R"({"w":{"dtype":"F32",)" + tensor + "}}";
    std::string bytes(8, '\0');
    const uint64_t n = header.size();
    std::memcpy(bytes.data(), &n, 8);
    write_bytes(path, bytes + header + std::string(12, '\1'));
    expect_error([&] { load_safetensors(path); }, {"demix_bad.safetensors", "tensor 'w'"});
  }
}

TEST(ManifestTest, ChecksumSeesAFlippedBitAndATrailingZero) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto a = (dir / "demix_checksum_a").string(), b = (dir / "demix_checksum_b").string();
  std::string bytes(1000, 'x');
  write_bytes(a, bytes);
  write_bytes(b, bytes);
  EXPECT_EQ(file_checksum(a), file_checksum(b));
  bytes[517] ^= 1;
  write_bytes(b, bytes);
  EXPECT_NE(file_checksum(a), file_checksum(b));
  write_bytes(b, std::string(1000, 'x') + '\0');  // the tail word is zero-padded internally
  EXPECT_NE(file_checksum(a), file_checksum(b));
}

TEST(ManifestTest, CorruptedByteIsNamedWhenTheFileIsRead) {
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_flip").string();
  std::filesystem::remove_all(run);
  const auto config = small_config();
  model::Gpt m(model::GptConfig::from(config), 2);
  const auto dir = save_checkpoint(run, *m, nullptr, config, {}, 1);
  const auto file = dir + "/experts/" + config.data.domains[1] + ".safetensors";
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(-3, std::ios::end);
  f.put('\x7f');
  f.close();
  EXPECT_EQ(resolve_checkpoint(run), dir);  // sizes still match
  expect_error([&] { load_model(dir, *m); }, {file.c_str(), "corrupted"});
}

TEST(ManifestTest, MissingFileIsNamedOnResolve) {
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_missing").string();
  std::filesystem::remove_all(run);
  const auto config = small_config();
  model::Gpt m(model::GptConfig::from(config), 2);
  const auto dir = save_checkpoint(run, *m, nullptr, config, {}, 1);
  const auto file = dir + "/experts/" + config.data.domains[0] + ".safetensors";
  std::filesystem::remove(file);
  expect_error([&] { resolve_checkpoint(run); }, {file.c_str(), "missing"});
  std::filesystem::remove(dir + "/manifest.json");
  expect_error([&] { resolve_checkpoint(dir); }, {"manifest.json"});
}

TEST(ManifestTest, ResumeFallsBackToThePreviousCompleteCheckpoint) {
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_fallback").string();
  std::filesystem::remove_all(run);
  const auto config = small_config();
  model::Gpt m(model::GptConfig::from(config), 2);
  const auto first = save_checkpoint(run, *m, nullptr, config, {1, 0}, 3);
  const auto second = save_checkpoint(run, *m, nullptr, config, {2, 0}, 3);
  EXPECT_EQ(latest_valid_checkpoint(run), second);
  std::filesystem::resize_file(second + "/shared.safetensors", 64);
  std::filesystem::create_directories(run + "/checkpoints/step_00000003.tmp");  // a crashed write
  EXPECT_EQ(latest_valid_checkpoint(run), first);
  std::filesystem::remove(first + "/meta.json");
  EXPECT_EQ(latest_valid_checkpoint(run), "");
}

TEST(CheckpointTest, RunDirectoryIsCheckedBeforeTraining) {
  namespace fs = std::filesystem;
  const auto base = fs::temp_directory_path() / "demix_run_dir_check";
  fs::remove_all(base);
  fs::create_directories(base);
  write_bytes((base / "file").string(), "x");
  const auto under_file = (base / "file" / "run").string();
  expect_error([&] { check_run_dir(under_file, 1); }, {under_file.c_str(), "cannot be created"});
  const auto too_big = (base / "new" / "run").string();
  expect_error([&] { check_run_dir(too_big, uintmax_t(1) << 62); }, {"MiB free"});
  EXPECT_FALSE(fs::exists(base / "new"));  // refused before anything was created
  check_run_dir(too_big, 1 << 20);
  EXPECT_TRUE(fs::is_directory(too_big));
  EXPECT_TRUE(fs::is_empty(too_big));  // the write probe is gone
}

}  // namespace
}  // namespace demix::train
