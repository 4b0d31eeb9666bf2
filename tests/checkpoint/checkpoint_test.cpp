#include "demix/checkpoint/checkpoint.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "demix/core/error.h"
#include "demix/core/json.h"
#include "demix/core/manifest.h"
#include "demix/ops/execution_policy.h"
#include "demix/optim/optimizer.h"
#include "support/small_config.h"

namespace demix::checkpoint {
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
  optim::AdamW opt_a(named(*a), config.optim);
  torch::manual_seed(0);
  const auto x = torch::randint(0, 40, {3, 8}), y = torch::randint(0, 40, {3, 8});
  a->loss(x, y, model::Routing({0, 1, 2}, torch::kCPU)).backward();
  opt_a.step(1e-2);
  const auto dir = save_checkpoint(run, *a, &opt_a, config, {1, 42}, 2);

  EXPECT_TRUE(std::filesystem::exists(dir + "/experts/beta.safetensors"));
  EXPECT_EQ(resolve_checkpoint(run), dir);
  model::Gpt b(model::GptConfig::from(config), /*seed=*/999);
  optim::AdamW opt_b(named(*b), config.optim);
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

TEST(CheckpointTest, MetaRecordsTheResolvedExecutionPolicy) {
  const ops::ScopedExecutionPolicy restore(ops::execution_policy());
  auto config = small_config();
  config.train.cpu_gemm = CpuGemmChoice::kAuto;
  config.train.fused_cuda_kernels = true;
  ops::apply_execution_policy(config.train);
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_execution").string();
  std::filesystem::remove_all(run);
  model::Gpt m(model::GptConfig::from(config), 2);
  const auto meta =
      read_json_file(save_checkpoint(run, *m, nullptr, config, {}, 1) + "/meta.json", "meta");
  const auto& execution = meta.at("execution");
  // "auto" is resolved on this machine: the library the GEMMs actually went through
  EXPECT_EQ(execution.at("cpu_gemm").get<std::string>(),
            ops::to_string(ops::resolve_cpu_gemm(CpuGemmChoice::kAuto)));
  EXPECT_TRUE(execution.at("fused_cuda_kernels").get<bool>());
  EXPECT_EQ(execution.at("threads").get<int>(), at::get_num_threads());
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

// Shapes and offsets must be lists of integers (offsets non-negative): not fractions, booleans,
// strings or a bare number, which JSON readers would otherwise convert silently.
TEST(SafetensorsTest, ShapesAndOffsetsMustBeIntegerLists) {
  const auto path = (std::filesystem::temp_directory_path() / "demix_kinds.safetensors").string();
  for (const std::string& tensor :
       {R"("shape":[1.5,2],"data_offsets":[0,12])", R"("shape":[true],"data_offsets":[0,12])",
        R"("shape":"3","data_offsets":[0,12])", R"("shape":3,"data_offsets":[0,12])",
        R"("shape":[3],"data_offsets":[-1,11])", R"("shape":[3],"data_offsets":[0.0,12])"}) {
    const std::string header = R"({"w":{"dtype":"F32",)" + tensor + "}}";
    std::string bytes(8, '\0');
    const uint64_t n = header.size();
    std::memcpy(bytes.data(), &n, 8);
    write_bytes(path, bytes + header + std::string(12, '\1'));
    expect_error([&] { load_safetensors(path); },
                 {"demix_kinds.safetensors", "tensor 'w'", "must be a list of integers"});
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

// Strict loading: a checkpoint loads only into the model it describes.

std::string saved_small(const std::string& name, const Config& config,
                        const optim::AdamW* opt = nullptr, model::Gpt* model = nullptr) {
  const auto run = (std::filesystem::temp_directory_path() / name).string();
  std::filesystem::remove_all(run);
  model::Gpt m(model::GptConfig::from(config), 2);
  if (model) *model = m;
  return save_checkpoint(run, *m, opt, config, {3, 5}, 1);
}

TEST(StrictLoadTest, FewerOrMoreLayersAreRefused) {
  const auto config = small_config();  // 2 layers
  const auto dir = saved_small("demix_strict_layers", config);
  auto fewer = config;
  fewer.model.n_layer = 1;
  model::Gpt one(model::GptConfig::from(fewer), 2);
  expect_error([&] { load_model(dir, *one); },
               {dir.c_str(), "model.n_layer=2 in its config.yaml, the model has model.n_layer=1"});
  auto more = config;
  more.model.n_layer = 3;
  model::Gpt three(model::GptConfig::from(more), 2);
  expect_error([&] { load_model(dir, *three); }, {"model.n_layer=3"});
}

// A DEMix layer loaded as a dense one: an expert file's tensors have no place in the model.
TEST(StrictLoadTest, TensorsWithoutAPlaceAreRefused) {
  const auto config = small_config();  // both layers are DEMix layers
  const auto dir = saved_small("demix_strict_unused", config);
  auto first_only = config;
  first_only.model.demix_layers = {0};
  model::Gpt m(model::GptConfig::from(first_only), 2);
  expect_error([&] { load_model(dir, *m); },
               {"experts/alpha.safetensors", "'blocks.1.ff.fc1.bias' has no place in the model"});
}

TEST(StrictLoadTest, OtherHeadCountIsRefused) {
  const auto config = small_config();  // 2 heads, d_model 16
  const auto dir = saved_small("demix_strict_heads", config);
  auto heads = config;
  heads.model.n_head = 4;  // same shapes, other attention
  model::Gpt m(model::GptConfig::from(heads), 2);
  expect_error([&] { load_model(dir, *m); }, {dir.c_str(), "model.n_head", "2", "4"});
}

TEST(StrictLoadTest, DeliberatePartialLoadsStillWork) {
  const auto config = small_config();
  model::Gpt saved{nullptr};
  const auto dir = saved_small("demix_strict_partial", config, nullptr, &saved);
  const auto expected = saved->named_parameters();
  // Only the shared parameters (as a LoRA or MoDE backbone load asks).
  model::Gpt shared_only(model::GptConfig::from(config), 9);
  load_model(dir, *shared_only, [](const std::string& n) { return !model::expert_of(n); });
  for (const auto& item : shared_only->named_parameters()) {
    if (model::expert_of(item.key())) continue;
    EXPECT_TRUE(torch::equal(item.value(), expected[item.key()])) << item.key();
  }
  // A rank hosting expert 1 alone reads beta's file only.
  auto gpt = model::GptConfig::from(config);
  gpt.local_experts = {1};
  model::Gpt hosting_beta(gpt, 9);
  std::filesystem::remove(dir + "/experts/alpha.safetensors");  // never opened
  load_model(dir, *hosting_beta);
  for (const auto& item : hosting_beta->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), expected[item.key()])) << item.key();
}

// The run's data.domains in another order: expert i of the model is the run's domains[i], so each
// expert (and its AdamW moments) must come from the file of that domain.
TEST(StrictLoadTest, ExpertsAreMappedByDomainName) {
  const auto config = small_config();  // alpha, beta, gamma
  model::Gpt a(model::GptConfig::from(config), 1);
  optim::AdamW opt_a(named(*a), config.optim);
  torch::manual_seed(0);
  a->loss(torch::randint(0, 40, {3, 8}), torch::randint(0, 40, {3, 8}),
          model::Routing({0, 1, 2}, torch::kCPU))
      .backward();
  opt_a.step(1e-2);
  const auto run = (std::filesystem::temp_directory_path() / "demix_strict_order").string();
  std::filesystem::remove_all(run);
  const auto dir = save_checkpoint(run, *a, &opt_a, config, {1, 0}, 1);

  auto permuted = config;
  permuted.data.domains = {"gamma", "alpha", "beta"};
  model::Gpt b(model::GptConfig::from(permuted), 5);
  optim::AdamW opt_b(named(*b), permuted.optim);
  load_model(dir, *b, permuted);
  load_optimizer(dir, opt_b, permuted);
  auto renamed = [](const std::string& name, int64_t from, int64_t to) {
    const auto at = name.find(".experts." + std::to_string(from) + ".");
    return name.substr(0, at) + ".experts." + std::to_string(to) + name.substr(at + 10);
  };
  const std::vector<int64_t> old_id = {2, 0, 1};  // permuted[i] was config's old_id[i]
  const auto pa = a->named_parameters();
  for (const auto& item : b->named_parameters()) {
    const auto e = model::expert_of(item.key());
    const auto source = e ? renamed(item.key(), *e, old_id[size_t(*e)]) : item.key();
    EXPECT_TRUE(torch::equal(item.value(), pa[source])) << item.key();
  }
  const auto sa = opt_a.state(), sb = opt_b.state();
  for (const auto& [name, t] : sb) {
    const auto e = model::expert_of(name);
    const auto source = e ? renamed(name, *e, old_id[size_t(*e)]) : name;
    EXPECT_TRUE(torch::equal(t, sa.at(source))) << name;
  }
  auto other = config;
  other.data.domains = {"alpha", "beta", "delta"};
  model::Gpt c(model::GptConfig::from(other), 5);
  expect_error([&] { load_model(dir, *c, other); }, {dir.c_str(), "delta"});
}

// Integrity: every file read is checked against the manifest; a swapped expert file is refused by
// the domain recorded inside it even when the manifest was written again.

void replace_in_file(const std::string& path, const std::string& from, const std::string& to) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  const auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << from << " in " << path;
  text.replace(at, from.size(), to);
  write_bytes(path, text);
}

TEST(CheckpointIntegrityTest, EditedMetadataOfTheSameSizeIsRefused) {
  const auto config = small_config();
  const auto dir = saved_small("demix_integrity_meta", config);
  replace_in_file(dir + "/meta.json", "\"step\": 3", "\"step\": 9");
  expect_error([&] { checkpoint_state(resolve_checkpoint(dir)); }, {"meta.json", "checksum"});
  replace_in_file(dir + "/config.yaml", "n_head: 2", "n_head: 4");
  expect_error([&] { checkpoint_config(dir); }, {"config.yaml", "checksum"});
}

TEST(CheckpointIntegrityTest, NegativeStepOrCursorIsRefused) {
  const auto config = small_config();
  const auto dir = saved_small("demix_integrity_negative", config);
  replace_in_file(dir + "/meta.json", "\"step\": 3", "\"step\": -3");
  write_manifest(dir);  // resealed: the value itself must be refused
  expect_error([&] { checkpoint_state(dir); }, {"meta.json", "step", "-3"});
  replace_in_file(dir + "/meta.json", "\"step\": -3", "\"step\": 3");
  replace_in_file(dir + "/meta.json", "\"data_cursor\": 5", "\"data_cursor\": -5");
  write_manifest(dir);
  expect_error([&] { checkpoint_state(dir); }, {"meta.json", "data_cursor", "-5"});
}

TEST(CheckpointIntegrityTest, SwappedExpertFileIsRefusedByName) {
  const auto config = small_config();
  model::Gpt m(model::GptConfig::from(config), 2);
  optim::AdamW opt(named(*m), config.optim);
  const auto run = (std::filesystem::temp_directory_path() / "demix_integrity_swap").string();
  std::filesystem::remove_all(run);
  const auto dir = save_checkpoint(run, *m, &opt, config, {1, 0}, 1);
  for (const auto* sub : {"/experts/", "/optimizer/experts/"}) {
    EXPECT_EQ(safetensors_metadata(dir + sub + "beta.safetensors").at("domain"), "beta") << sub;
    const auto a = dir + sub + "alpha.safetensors", b = dir + sub + "beta.safetensors";
    std::filesystem::rename(a, a + ".x");
    std::filesystem::rename(b, a);
    std::filesystem::rename(a + ".x", b);
  }
  write_manifest(dir);
  expect_error([&] { load_model(dir, *m); }, {"experts/alpha.safetensors", "'beta'", "'alpha'"});
  expect_error([&] { load_optimizer(dir, opt); },
               {"optimizer/experts/alpha.safetensors", "'beta'"});
}

TEST(CheckpointIntegrityTest, ExpertFilesWithoutADomainRecordStillLoad) {
  const auto config = small_config();
  model::Gpt saved{nullptr};
  const auto dir = saved_small("demix_integrity_old", config, nullptr, &saved);
  for (const auto& domain : config.data.domains) {  // as written before domains were recorded
    const auto file = dir + "/experts/" + domain + ".safetensors";
    save_safetensors(file, load_safetensors(file));
    EXPECT_TRUE(safetensors_metadata(file).empty());
  }
  write_manifest(dir);
  model::Gpt m(model::GptConfig::from(config), 9);
  load_model(dir, *m);
  const auto expected = saved->named_parameters();
  for (const auto& item : m->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), expected[item.key()])) << item.key();
}

TEST(CheckpointTest, UnwritableRunDirectoryIsNotAboutFreeSpace) {
  const std::string proc = "/proc/demix_no_such_dir";  // /proc takes no new directories
  expect_error([&] { check_run_dir(proc, 1); }, {proc.c_str(), "cannot be created"});
  expect_error([&] { check_run_dir(proc, uintmax_t(1) << 62); }, {"cannot be created"});
}

}  // namespace
}  // namespace demix::checkpoint
