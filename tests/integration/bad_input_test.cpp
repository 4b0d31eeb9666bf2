// Bad input through the command line, one case per test: the `demix` binary must exit non-zero
// (not by a signal) with exactly one "error: " line on stderr that names the offending file, key
// or value, and must leave the sandbox exactly as it was (nothing written, nothing overwritten).

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "demix/core/manifest.h"
#include "demix/data/token_split.h"
#include "demix/data/tokenizer.h"

namespace demix {
namespace {
namespace fs = std::filesystem;

// ctest runs each case as its own process, two at a time: each process works in its own sandbox,
// a copy of a fixture that the first process builds (under a lock) for this build of demix.
const fs::path kFixture = fs::temp_directory_path() / "demix_bad_input_fixture";
const fs::path kSandbox =
    fs::temp_directory_path() / ("demix_bad_input." + std::to_string(::getpid()));
const fs::path kWork = kSandbox / "work";       // everything here must survive each case unchanged
const std::string kA = (kWork / "a").string();  // DEMix: scripture, humour
const std::string kB = (kWork / "b").string();  // DEMix: scripture, wordnet, another seed

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct Result {
  int exit_code = 0;
  bool signaled = false;
  std::string err;
};

Result run_demix(const std::vector<std::string>& args,
                 const std::map<std::string, std::string>& env = {}) {
  std::string command = "env -u RANK -u WORLD_SIZE -u LOCAL_RANK -u MASTER_PORT -u DEMIX_FAULT";
  for (const auto& [k, v] : env) command += " " + k + "=" + quote(v);
  command += " " + quote(DEMIX_BIN);
  for (const auto& a : args) command += " " + quote(a);
  const auto err_path = (kSandbox / "stderr.txt").string();
  command += " >/dev/null 2>" + quote(err_path);
  const int status = std::system(command.c_str());
  Result r;
  r.signaled = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) >= 128);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_path);
  std::ostringstream s;
  s << in.rdbuf();
  r.err = s.str();
  return r;
}

// Every file and directory under kWork with its size and modification time.
std::map<std::string, std::string> snapshot() {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(kWork)) {
    const auto time = e.last_write_time().time_since_epoch().count();
    out[e.path().string()] =
        (e.is_regular_file() ? std::to_string(e.file_size()) : "dir") + "@" + std::to_string(time);
  }
  return out;
}

const std::vector<std::string> kSmall = {
    "--config", "configs/tiny.yaml",    "--set", "model.n_layer=1",
    "--set",    "model.d_model=32",     "--set", "model.n_head=2",
    "--set",    "model.seq_len=32",     "--set", "train.steps=2",
    "--set",    "optim.warmup_steps=1", "--set", "train.eval_tokens=256",
    "--set",    "train.log_every=1"};

std::vector<std::string> small_train(const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"train"};
  args.insert(args.end(), kSmall.begin(), kSmall.end());
  args.insert(args.end(),
              {"--set", "data.domains=[scripture,humour]", "--set", "train.out_dir=" + out});
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

void write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

// A tokens directory holding only scripture, from `tokens` (the other splits are the real ones).
std::string token_dir(const fs::path& work, const std::string& name,
                      const std::vector<uint32_t>& tokens, uint64_t vocab = 8192) {
  const auto dir = work / name;
  fs::create_directories(dir / "scripture");
  for (const char* split : {"valid", "test"})
    fs::copy("data/tokens/spm8k/scripture/" + std::string(split), dir / "scripture" / split,
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  data::SplitInfo info;
  info.vocab_size = vocab;
  data::SplitWriter train((dir / "scripture" / "train").string(), 1 << 20, info);
  if (!tokens.empty()) train.append_document(tokens, 0);
  train.commit();
  return dir.string();
}

int busy_port(int& fd) {  // a listening socket on 127.0.0.1: its port is in use
  fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::listen(fd, 1);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

class BadInputTest : public ::testing::Test {
 protected:
  // Two small trained checkpoints (a, b), broken copies of a, and broken inputs under `work`.
  static bool build_fixture(const fs::path& work) {
    const auto a = (work / "a").string(), b = (work / "b").string();
    fs::create_directories(work);
    if (run_demix(small_train(a)).exit_code != 0) return false;
    if (run_demix(
            small_train(b, {"--set", "data.domains=[scripture,wordnet]", "--set", "train.seed=7"}))
            .exit_code != 0)
      return false;
    // Broken copies of a, and broken inputs.
    const auto a_ckpt = a + "/checkpoints/step_00000002";
    for (const char* copy : {"a_foreign", "a_truncated", "a_missing"})
      fs::copy(a_ckpt, work / copy, fs::copy_options::recursive);
    fs::copy_file(b + "/checkpoints/step_00000002/shared.safetensors",
                  work / "a_foreign" / "shared.safetensors", fs::copy_options::overwrite_existing);
    const auto expert = work / "a_truncated" / "experts" / "humour.safetensors";
    fs::resize_file(expert, fs::file_size(expert) / 2);
    fs::remove(work / "a_missing" / "experts" / "humour.safetensors");
    write(work / "file", "not a directory\n");
    write(work / "latin1.txt", "caf\xe9 au lait\n");
    write(work / "ok.txt", "plain text\n");
    write(work / "unknown_key.yaml", "model: {widht: 3}\n");
    write(work / "no_domains.yaml", "model: {d_model: 64, n_head: 4}\n");
    write(work / "syntax.yaml", "model: {d_model: 64\n");
    write(work / "twice.yaml", "data: {domains: [scripture]}\ntrain:\n  steps: 2\n  steps: 3\n");
    std::vector<uint32_t> ok(4096, 5);
    token_dir(work, "tokens_empty", {});
    auto high = ok;
    high[1234] = 9000;
    token_dir(work, "tokens_high_id", high);
    token_dir(work, "tokens_odd", ok);
    std::ofstream(work / "tokens_odd" / "scripture" / "train" / "00000.bin", std::ios::app) << 'x';
    return true;
  }

  static void SetUpTestSuite() {
    fs::create_directories(kSandbox);
    const auto stamp =
        "ready." + std::to_string(fs::last_write_time(DEMIX_BIN).time_since_epoch().count());
    const int lock = ::open((kFixture.string() + ".lock").c_str(), O_CREAT | O_RDWR, 0644);
    ::flock(lock, LOCK_EX);
    if (!fs::exists(kFixture / stamp)) {
      fs::remove_all(kFixture);
      if (build_fixture(kFixture / "work")) write(kFixture / stamp, "");
    }
    ::flock(lock, LOCK_UN);
    ::close(lock);
    fixture_ready_ = fs::exists(kFixture / stamp);
    if (fixture_ready_) fs::copy(kFixture / "work", kWork, fs::copy_options::recursive);
  }
  static void TearDownTestSuite() { fs::remove_all(kSandbox); }
  void SetUp() override {
    ASSERT_TRUE(fixture_ready_) << "the fixture checkpoints could not be trained (see stderr.txt)";
  }
  static inline bool fixture_ready_ = false;

  // Runs one bad case; checks the exit, the single error line and that nothing changed.
  void expect_refused(const std::vector<std::string>& args, const std::string& expected,
                      const std::map<std::string, std::string>& env = {}) {
    const auto before = snapshot();
    const auto r = run_demix(args, env);
    EXPECT_NE(r.exit_code, 0) << r.err;
    EXPECT_FALSE(r.signaled) << "crashed: " << r.err;
    std::istringstream lines(r.err);
    std::string line, error_line;
    int errors = 0;
    while (std::getline(lines, line))
      if (line.rfind("error: ", 0) == 0) {
        ++errors;
        error_line = line;
      }
    EXPECT_EQ(errors, 1) << r.err;
    std::cout << "    " << error_line << "\n";  // the message, for the reader of the test log
    EXPECT_NE(error_line.find(expected), std::string::npos)
        << "expected '" << expected << "' in: " << r.err;
    EXPECT_EQ(snapshot(), before) << "the sandbox changed";
    EXPECT_FALSE(fs::exists(kWork / "out")) << "an output was written";
  }

  static std::string out() { return (kWork / "out").string(); }
  static std::string a_checkpoint() { return kA + "/checkpoints/step_00000002"; }
};

// Configs.
TEST_F(BadInputTest, UnknownKeyOnTheCommandLine) {
  expect_refused(small_train(out(), {"--set", "model.d_modle=64"}), "model.d_modle");
}
TEST_F(BadInputTest, UnknownKeyInAFile) {
  expect_refused({"train", "--config", (kWork / "unknown_key.yaml").string()}, "widht");
}
TEST_F(BadInputTest, WrongType) {
  expect_refused(small_train(out(), {"--set", "model.d_model=wide"}), "model.d_model");
}
TEST_F(BadInputTest, MissingRequiredKey) {
  expect_refused({"train", "--config", (kWork / "no_domains.yaml").string()}, "data.domains");
}
TEST_F(BadInputTest, NegativeSize) {
  expect_refused(small_train(out(), {"--set", "model.n_layer=-1"}), "model.n_layer");
}
TEST_F(BadInputTest, ZeroSize) {
  expect_refused(small_train(out(), {"--set", "data.sequences_per_domain=0"}),
                 "data.sequences_per_domain");
}
TEST_F(BadInputTest, HeadsDoNotDivideWidth) {
  expect_refused(small_train(out(), {"--set", "model.n_head=3"}), "not divisible by model.n_head");
}
TEST_F(BadInputTest, SequenceLongerThanTheCheckpointsPositions) {
  expect_refused({"eval", a_checkpoint(), "--set", "model.seq_len=64"}, "wpe.weight");
}
TEST_F(BadInputTest, DomainListedTwice) {
  expect_refused(small_train(out(), {"--set", "data.domains=[scripture,scripture]"}), "twice");
}
TEST_F(BadInputTest, YamlSyntaxError) {
  expect_refused({"train", "--config", (kWork / "syntax.yaml").string()}, "syntax.yaml");
}
TEST_F(BadInputTest, MissingConfigFile) {
  expect_refused({"train", "--config", "configs/nosuch.yaml"}, "configs/nosuch.yaml");
}
TEST_F(BadInputTest, UnknownNonFinitePolicy) {
  expect_refused(small_train(out(), {"--set", "train.nonfinite=ignore"}), "train.nonfinite=ignore");
}
TEST_F(BadInputTest, InfiniteLearningRate) {
  expect_refused(small_train(out(), {"--set", "optim.lr=.inf"}), "optim.lr: expected a finite");
}
TEST_F(BadInputTest, KeyGivenTwiceInAFile) {
  expect_refused({"train", "--config", (kWork / "twice.yaml").string()},
                 "train.steps is given twice");
}

// Sizes beyond the machine: refused with the numbers before anything is allocated, or, where an
// allocation fails after all, a one-line error instead of an abort.
TEST_F(BadInputTest, ModelTooWideForTheMemory) {
  expect_refused(small_train(out(), {"--set", "model.d_model=1048576", "--set", "model.n_head=4"}),
                 "model.d_model=1048576, model.n_layer=1");
}
TEST_F(BadInputTest, ModelTooDeepForTheMemory) {
  expect_refused(small_train(out(), {"--set", "model.n_layer=100000"}), "model.n_layer=100000");
}
TEST_F(BadInputTest, BatchTooLargeForTheMemory) {
  // The first batch's allocation fails once the run has started: a one-line error, no crash,
  // no checkpoint (the run directory holds only its config and metrics).
  const auto r = run_demix(small_train(out(), {"--set", "data.sequences_per_domain=100000000"}));
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.signaled) << "crashed: " << r.err;
  EXPECT_NE(r.err.find("error: out of memory"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(fs::exists(kWork / "out" / "checkpoints"));
  fs::remove_all(kWork / "out");
}

// Data.
TEST_F(BadInputTest, MissingDomainDirectory) {
  expect_refused(small_train(out(), {"--set", "data.domains=[scripture,klingon]"}), "klingon");
}
TEST_F(BadInputTest, EmptyTokenFile) {
  expect_refused(small_train(out(), {"--set", "data.domains=[scripture]", "--set",
                                     "data.tokens_dir=" + (kWork / "tokens_empty").string()}),
                 "0 tokens, fewer than one sequence");
}
TEST_F(BadInputTest, TokenIdOutsideTheVocabulary) {
  expect_refused(small_train(out(), {"--set", "data.domains=[scripture]", "--set",
                                     "data.tokens_dir=" + (kWork / "tokens_high_id").string()}),
                 "token id 9000 at position 1234");
}
TEST_F(BadInputTest, TokenFileSizeNotAMultipleOfTheTokenSize) {
  expect_refused(small_train(out(), {"--set", "data.domains=[scripture]", "--set",
                                     "data.tokens_dir=" + (kWork / "tokens_odd").string()}),
                 "size does not match");
}
TEST_F(BadInputTest, TokenFilesOfAnotherVocabulary) {
  expect_refused(small_train(out(), {"--set", "model.vocab_size=4096"}),
                 "encoded with a 8192-piece vocabulary");
}
TEST_F(BadInputTest, NonUtf8TextFile) {
  expect_refused({"eval", a_checkpoint(), "--text", (kWork / "latin1.txt").string()},
                 "not UTF-8 text (invalid byte 0xe9 at offset 3)");
}
TEST_F(BadInputTest, MissingTextFile) {
  expect_refused({"eval", a_checkpoint(), "--text", (kWork / "nosuch.txt").string()}, "nosuch.txt");
}

// Priors, evaluation and generation.
// A prior file for checkpoint a (experts scripture, humour) with `body` after its expert list.
std::string prior_file(const std::string& name, const std::string& body,
                       const std::string& experts = R"(["scripture", "humour"])") {
  const auto path = kWork / name;
  write(path, R"({"experts": )" + experts + ", " + body + "}\n");
  return path.string();
}
TEST_F(BadInputTest, PriorWithTooFewValues) {
  expect_refused({"generate", a_checkpoint(), "--prompt", "In the", "--prior",
                  prior_file("short.json", R"("prior": [1.0])")},
                 "short.json: 1 prior values for 2 expert names");
}
TEST_F(BadInputTest, PriorOverOtherExperts) {
  const auto eleven = prior_file(
      "eleven.json", R"("prior": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05])",
      R"(["scripture", "humour", "c", "d", "e", "f", "g", "h", "i", "j", "k"])");
  expect_refused({"eval", a_checkpoint(), "--prior", eleven},
                 "eleven.json: prior over experts [scripture,...] (11) does not match");
}
TEST_F(BadInputTest, PriorSummingToTwo) {
  expect_refused(
      {"expert", "merge", a_checkpoint(), "--domains", "scripture,humour", "--weights",
       prior_file("sum2.json", R"("prior": [1.0, 1.0])"), "--as", "both", "--out", out()},
      "sum2.json: prior values sum to 2");
}
// NaN is not JSON (Python's json.dump writes it nonetheless): the file is refused as malformed,
// naming where; a null (what demix writes for a NaN) is refused as a value.
TEST_F(BadInputTest, PriorWithNaN) {
  expect_refused(
      {"eval", a_checkpoint(), "--prior", prior_file("nan.json", R"("prior": [NaN, 0.5])")},
      "nan.json: malformed prior file (JSON): parse error at line 1, column 48");
  expect_refused(
      {"eval", a_checkpoint(), "--prior", prior_file("null.json", R"("prior": [null, 0.5])")},
      "null.json: prior[0]=null: expected a finite probability");
}
TEST_F(BadInputTest, PriorWithAString) {
  expect_refused(
      {"eval", a_checkpoint(), "--prior", prior_file("string.json", R"("prior": [0.5, "half"])")},
      "string.json: prior[1]=half");
}
TEST_F(BadInputTest, PriorWithANegativeValue) {
  expect_refused({"generate", a_checkpoint(), "--prompt", "In the", "--prior",
                  prior_file("negative.json", R"("prior": [-0.5, 1.5])")},
                 "negative.json: prior[0]=-0.5");
}
TEST_F(BadInputTest, TextIsADirectory) {
  expect_refused({"eval", a_checkpoint(), "--text", kWork.string()}, "not a regular file");
}
TEST_F(BadInputTest, GenerateWithoutDomainPriorOrMix) {
  expect_refused({"generate", a_checkpoint(), "--prompt", "In the"},
                 "one of --domain X, --prior prior.json, --mix uniform or --router");
}
TEST_F(BadInputTest, DomainWithoutText) {
  expect_refused({"eval", a_checkpoint(), "--domain", "humour"},
                 "--domain humour: only with --text");
}
TEST_F(BadInputTest, TopKWithoutMixing) {
  expect_refused({"eval", a_checkpoint(), "--top-k", "1"}, "--top-k: only when mixing");
}
TEST_F(BadInputTest, NegativeTopK) {
  expect_refused({"eval", a_checkpoint(), "--text", (kWork / "ok.txt").string(), "--top-k", "-1"},
                 "--top-k -1");
}
TEST_F(BadInputTest, TemperatureNaN) {
  expect_refused({"generate", a_checkpoint(), "--prompt", "In the", "--domain", "humour",
                  "--temperature", "nan"},
                 "--temperature nan");
}
TEST_F(BadInputTest, TemperatureInfinite) {
  expect_refused({"generate", a_checkpoint(), "--prompt", "In the", "--domain", "humour",
                  "--temperature", "inf"},
                 "--temperature inf");
}
TEST_F(BadInputTest, TopPNaN) {
  expect_refused(
      {"generate", a_checkpoint(), "--prompt", "In the", "--domain", "humour", "--top-p", "nan"},
      "--top-p nan");
}

// Tokenizer.
TEST_F(BadInputTest, MissingTokenizerModel) {
  expect_refused({"eval", a_checkpoint(), "--text", (kWork / "ok.txt").string(), "--set",
                  "tokenizer.model=" + (kWork / "nosuch.model").string()},
                 "nosuch.model");
}
TEST_F(BadInputTest, NotATokenizerModel) {
  expect_refused({"eval", a_checkpoint(), "--text", (kWork / "ok.txt").string(), "--set",
                  "tokenizer.model=configs/tiny.yaml"},
                 "not a sentencepiece model");
}
TEST_F(BadInputTest, TokenizerOfAnotherVocabularySize) {
  expect_refused({"data", "--config", "configs/tiny.yaml", "--set", "model.vocab_size=4096"},
                 "vocabulary of 8192 pieces, but model.vocab_size=4096");
}

// Checkpoints.
TEST_F(BadInputTest, CheckpointOfAnotherShape) {
  expect_refused({"eval", a_checkpoint(), "--set", "model.d_model=64"}, "has shape");
}
TEST_F(BadInputTest, CheckpointWithOtherExperts) {
  expect_refused(small_train(out(), {"--set", "data.domains=[scripture,humour,wordnet]", "--set",
                                     "train.init_from=" + kA}),
                 "differ from the run's");
}
TEST_F(BadInputTest, SharedFingerprintMismatch) {
  expect_refused({"expert", "add", kA, "--from", kB, "--domain", "wordnet", "--out", out()},
                 "shared parameters differ");
}
TEST_F(BadInputTest, FileFromAnotherModel) {
  expect_refused({"eval", (kWork / "a_foreign").string()}, "shared.safetensors");
}
TEST_F(BadInputTest, TruncatedCheckpointFile) {
  expect_refused({"eval", (kWork / "a_truncated").string()}, "humour.safetensors");
}
TEST_F(BadInputTest, MissingCheckpointFile) {
  expect_refused({"eval", (kWork / "a_missing").string()}, "humour.safetensors: missing");
}
TEST_F(BadInputTest, NotACheckpoint) {
  expect_refused({"eval", kWork.string()}, "not a checkpoint");
}
TEST_F(BadInputTest, ResumeFromNowhere) {
  expect_refused(small_train(out(), {"--resume", (kWork / "nosuch").string()}), "nosuch");
}

// Strict loading and integrity: a checkpoint loads only into the model it describes, and every
// file read matches the manifest; an expert file must hold the domain it is named after.
TEST_F(BadInputTest, EvalWithAnotherHeadCount) {
  expect_refused({"eval", a_checkpoint(), "--set", "model.n_head=4"},
                 "model.n_head=2 in its config.yaml, the model has model.n_head=4");
}
TEST_F(BadInputTest, EvalWithFewerExperts) {
  expect_refused({"eval", a_checkpoint(), "--set", "data.domains=[scripture]"},
                 "its experts [scripture,humour] are not the model's [scripture]");
}
// A copy of a's checkpoint outside the work directory, with meta.json edited by `edit` (and the
// manifest written again when `reseal`).
std::string edited_checkpoint(const std::string& name, const std::string& from,
                              const std::string& to, bool reseal) {
  const auto dir = kSandbox / name;
  fs::copy(kA + "/checkpoints/step_00000002", dir, fs::copy_options::recursive);
  std::ifstream in(dir / "meta.json");
  std::string meta((std::istreambuf_iterator<char>(in)), {});
  meta.replace(meta.find(from), from.size(), to);
  write(dir / "meta.json", meta);
  if (reseal) write_manifest(dir.string());
  return dir.string();
}
TEST_F(BadInputTest, ResumeFromAMetaJsonEditedToTheSameSize) {
  const auto edited = edited_checkpoint("edited", "\"step\": 2", "\"step\": 9", false);
  expect_refused(small_train(out(), {"--resume", edited}),
                 "meta.json: checksum differs from manifest.json");
}
TEST_F(BadInputTest, ResumeFromANegativeStep) {
  const auto edited = edited_checkpoint("negative", "\"step\": 2", "\"step\": -2", true);
  expect_refused(small_train(out(), {"--resume", edited}), "step=-2, expected a count >= 0");
}
TEST_F(BadInputTest, SwappedExpertFilesUnderAResealedManifest) {
  const auto dir = kSandbox / "swapped";
  fs::copy(a_checkpoint(), dir, fs::copy_options::recursive);
  fs::rename(dir / "experts" / "humour.safetensors", dir / "x");
  fs::rename(dir / "experts" / "scripture.safetensors", dir / "experts" / "humour.safetensors");
  fs::rename(dir / "x", dir / "experts" / "scripture.safetensors");
  write_manifest(dir.string());
  expect_refused({"eval", dir.string()}, "holds the expert of domain 'scripture'");
}
TEST_F(BadInputTest, OutputDirectoryThatCannotBeCreated) {
  expect_refused(small_train("/proc/demix_run"),
                 "train.out_dir=/proc/demix_run: cannot be created");
}
TEST_F(BadInputTest, RemoveAnUnknownExpert) {
  expect_refused({"expert", "remove", kA, "--domain", "wordnet", "--out", out()},
                 "no expert for domain 'wordnet'");
}
TEST_F(BadInputTest, MergeTheSameExpertTwice) {
  expect_refused(
      {"expert", "merge", kA, "--domains", "scripture,scripture", "--as", "x", "--out", out()},
      "--domains lists 'scripture' twice");
}
TEST_F(BadInputTest, AdaptToADomainAlreadyTrained) {
  expect_refused({"adapt", "--config", "configs/dapt_demix.yaml", "--set", "adapt.base=" + kA,
                  "--set", "adapt.domain=humour", "--set", "train.out_dir=" + out()},
                 "already trained on it");
}

// Command line.
// Clusters and the cluster router.
TEST_F(BadInputTest, ClusterIntoAnExistingDirectory) {
  expect_refused({"cluster", "--config", "configs/tiny.yaml", "--output", kA}, kA + ": exists");
}
TEST_F(BadInputTest, ClusterSampleSmallerThanK) {
  expect_refused({"cluster", "--config", "configs/tiny.yaml", "--set", "cluster.sample_documents=3",
                  "--output", out()},
                 "cluster.sample_documents=3: expected >= cluster.k=8");
}
TEST_F(BadInputTest, RouterWithoutAFile) {
  expect_refused({"eval", a_checkpoint(), "--router"}, "--router: no router file");
}
TEST_F(BadInputTest, RouterThatIsNotARouterFile) {
  const auto path = prior_file("prior.json", R"("prior": [0.5, 0.5])");
  expect_refused({"eval", a_checkpoint(), "--router", path, "--top-k", "1"}, "prior.json");
}
TEST_F(BadInputTest, RouterOverOtherExperts) {
  // a router over the tiny config's 8 domains, for a model of 2
  const auto router = (kSandbox / "router8.safetensors").string();
  ASSERT_EQ(
      run_demix({"router", "--config", "configs/tiny.yaml", "--set", "cluster.sample_documents=200",
                 "--set", "cluster.svd_dims=8", "--output", router})
          .exit_code,
      0);
  expect_refused({"generate", a_checkpoint(), "--prompt", "In the", "--router", router},
                 "router8.safetensors: a router over experts [scripture,humour,dictionary");
}

TEST_F(BadInputTest, UnknownSubcommand) { expect_refused({"frobnicate"}, "frobnicate"); }
TEST_F(BadInputTest, MissingOptionValue) { expect_refused({"train", "--config"}, "--config"); }
TEST_F(BadInputTest, UnknownOption) {
  expect_refused({"eval", a_checkpoint(), "--bogus"}, "--bogus");
}

// Environment and output.
TEST_F(BadInputTest, RankWithoutWorldSize) {
  expect_refused(small_train(out()), "RANK=1: expected < WORLD_SIZE=1", {{"RANK", "1"}});
}
TEST_F(BadInputTest, MalformedWorldSize) {
  expect_refused(small_train(out()), "WORLD_SIZE=two", {{"RANK", "0"}, {"WORLD_SIZE", "two"}});
}
TEST_F(BadInputTest, WorldSizeThatDoesNotSplitTheExperts) {
  expect_refused(small_train(out(), {"--set", "data.domains=[scripture,humour,wordnet]"}),
                 "WORLD_SIZE=2", {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}});
}
TEST_F(BadInputTest, PortInUse) {
  int fd = -1;
  const int port = busy_port(fd);
  expect_refused(small_train(out(), {"--set", "dist.timeout_s=5"}),
                 "cannot serve the rendezvous store on 127.0.0.1:" + std::to_string(port),
                 {{"RANK", "0"},
                  {"WORLD_SIZE", "2"},
                  {"MASTER_ADDR", "127.0.0.1"},
                  {"MASTER_PORT", std::to_string(port)}});
  ::close(fd);
}
TEST_F(BadInputTest, OutputDirectoryUnderAFile) {
  expect_refused(small_train((kWork / "file" / "run").string()), "cannot be created");
}
TEST_F(BadInputTest, OutputDirectoryHoldingARun) {
  expect_refused(small_train(kA), "already holds a run");
}
TEST_F(BadInputTest, MalformedFaultInjection) {
  expect_refused(small_train(out()), "DEMIX_FAULT", {{"DEMIX_FAULT", "explode:0"}});
}

}  // namespace
}  // namespace demix
