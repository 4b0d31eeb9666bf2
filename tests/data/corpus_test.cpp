// `demix data` on JSON-lines and text_dir sources: fields, skips, errors, splits, duplicates and
// byte-identical output for any number of workers or chunk size. A small tokenizer is trained on
// the test's own documents (through the streamed sampler), so nothing here needs the corpus.

#include "demix/data/corpus.h"

#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/core/json.h"
#include "demix/data/tokenizer.h"

namespace demix::data {
namespace {
namespace fs = std::filesystem;

const std::vector<std::string> kWords = {"the",    "river",  "quietly", "function", "returns",
                                         "a",      "value",  "of",      "stone",    "light",
                                         "north",  "engine", "paper",   "while",    "under",
                                         "garden", "index",  "list",    "seven",    "bright"};

// Deterministic pseudo-text: document i of a domain.
std::string document(const std::string& domain, int i) {
  std::string text = domain + " " + std::to_string(i) + ":";
  uint64_t x = std::hash<std::string>{}(domain) + uint64_t(i) * 7919;
  for (int w = 0; w < 30 + i % 17; ++w) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    text += " " + kWords[(x >> 33) % kWords.size()];
    if ((x >> 20) % 9 == 0) text += ".\n";
  }
  return text;
}

std::string line(const std::string& text, const std::string& domain) {
  return Json{{"text", text}, {"meta", {{"source", domain}}}}.dump() + "\n";
}

void write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

class CorpusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("demix_corpus_" +
             std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(root_);
    std::string a, b;
    for (int i = 0; i < 60; ++i) a += line(document("alpha", i), "alpha");
    for (int i = 0; i < 40; ++i) b += line(document("beta", i), "beta");
    write(root_ / "in" / "a.jsonl", a);
    write(root_ / "in" / "b.jsonl", b);
    tokenizer_ = (root_ / "spm" / "spm.model").string();
    train_tokenizer(config());
  }
  void TearDown() override { fs::remove_all(root_); }

  Config config(std::vector<std::string> extra = {},
                const std::vector<std::string>& patterns = {"in/*.jsonl"}) const {
    std::string paths;
    for (const auto& p : patterns) paths += (paths.empty() ? "" : ", ") + (root_ / p).string();
    std::vector<std::string> overrides = {
        "model.vocab_size=320",
        "data.domains=[alpha]",
        "data.eval_domains=[beta]",
        "data.tokens_dir=" + (root_ / "tokens").string(),
        "data.sources=[{format: jsonl, domain_field: meta.source, paths: [" + paths + "]}]",
        "data.valid_fraction=0.2",
        "data.test_fraction=0.2",
        "tokenizer.model=" + tokenizer_,
        "tokenizer.sample_bytes_per_domain=100000"};
    overrides.insert(overrides.end(), extra.begin(), extra.end());
    return load_config("", overrides);
  }

  // The documents of a split, decoded.
  std::vector<std::string> documents(const Config& c, const std::string& domain,
                                     const std::string& split) const {
    const TokenSplit tokens(split_dir(c, domain, split));
    std::vector<int64_t> ids(tokens.size());
    tokens.read(0, ids.size(), ids.data());
    const Tokenizer tokenizer(tokenizer_);
    std::vector<std::string> docs;
    std::vector<int64_t> doc;
    for (auto id : ids) {
      if (id != tokenizer.eos_id()) {
        doc.push_back(id);
        continue;
      }
      docs.push_back(tokenizer.decode(doc));
      doc.clear();
    }
    EXPECT_TRUE(doc.empty()) << "a split ends with an end-of-text token";
    return docs;
  }

  std::string error_of(const Config& c) const {
    try {
      encode_corpus(c);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }

  // Every shard file under the tokens dir with its bytes.
  std::map<std::string, std::string> shard_bytes() const {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(root_ / "tokens"))
      if (e.path().extension() == ".bin") {
        std::ifstream in(e.path(), std::ios::binary);
        out[fs::relative(e.path(), root_ / "tokens").string()] =
            std::string(std::istreambuf_iterator<char>(in), {});
      }
    return out;
  }

  int files_written() const {
    int n = 0;
    if (fs::exists(root_ / "tokens"))
      for (const auto& e : fs::recursive_directory_iterator(root_ / "tokens"))
        n += e.is_regular_file();
    return n;
  }

  fs::path root_;
  std::string tokenizer_;
};

TEST_F(CorpusTest, NestedFieldsSkipsAndDuplicatesAreCountedInTheReport) {
  std::string extra = line(document("alpha", 3), "alpha");  // a duplicate of a.jsonl's 4th
  extra += "\n   \n";                                       // blank lines: skipped silently
  extra += R"({"meta": {"source": "alpha"}})"
           "\n";  // no text
  extra += R"({"text": "no domain here"})"
           "\n";
  extra += R"({"text": "", "meta": {"source": "alpha"}})"
           "\n";
  extra += R"({"text": "x", "meta": {"source": "gamma"}})"
           "\n";
  extra += R"({"text": "null domain", "meta": {"source": null}})"
           "\n";
  write(root_ / "in" / "c.jsonl", extra);
  const auto c = config();
  EXPECT_EQ(encode_corpus(c), 6);  // 2 domains x 3 splits
  const auto report = read_json_file(c.data.tokens_dir + "/report.json", "report");
  EXPECT_EQ(report["documents_read"], 101);
  EXPECT_EQ(report["documents"], 100);
  EXPECT_EQ(report["duplicates_dropped"], 1);
  EXPECT_EQ(report["duplicates_by_domain"]["alpha"], 1);
  EXPECT_EQ(report["skipped"]["missing_text"], 1);
  EXPECT_EQ(report["skipped"]["missing_domain"], 2);
  EXPECT_EQ(report["skipped"]["empty_text"], 1);
  EXPECT_EQ(report["skipped"]["other_domains"]["gamma"], 1);
  EXPECT_TRUE(fs::exists(c.data.tokens_dir + "/REPORT.md"));
  // Every document once, in exactly one split, in file order within a split.
  for (const auto& [domain, n] :
       std::vector<std::pair<std::string, int>>{{"alpha", 60}, {"beta", 40}}) {
    std::multiset<std::string> all;
    std::map<std::string, size_t> sizes;
    for (const auto& split : kSplits) {
      const auto docs = documents(c, domain, split);
      all.insert(docs.begin(), docs.end());
      sizes[split] = docs.size();
    }
    std::multiset<std::string> expected;
    for (int i = 0; i < n; ++i) expected.insert(document(domain, i));
    EXPECT_EQ(all, expected) << domain;
    EXPECT_GT(sizes["valid"], 0u) << domain;
    EXPECT_GT(sizes["test"], 0u) << domain;
    EXPECT_GT(sizes["train"], sizes["valid"] + sizes["test"]) << domain;
  }
  EXPECT_EQ(encode_corpus(c), 0);  // up to date
}

TEST_F(CorpusTest, SplitsDoNotDependOnFileOrderOrWhichFilesArePresent) {
  // The same documents in other files, in reverse order: every split holds the same documents.
  const auto before = config();
  encode_corpus(before);
  std::map<std::string, std::set<std::string>> splits;
  for (const auto& split : kSplits) {
    const auto docs = documents(before, "alpha", split);
    splits[split] = {docs.begin(), docs.end()};
  }
  std::string reversed;
  for (int i = 59; i >= 0; --i) reversed += line(document("alpha", i), "alpha");
  const auto half = reversed.find('\n', reversed.size() / 2) + 1;
  write(root_ / "other" / "z.jsonl", reversed.substr(0, half));
  write(root_ / "other" / "y.jsonl", reversed.substr(half));
  const auto after = config({}, {"other/*.jsonl"});
  encode_corpus(after);
  std::set<std::string> seen;
  for (const auto& split : kSplits) {
    const auto docs = documents(after, "alpha", split);
    EXPECT_EQ(std::set<std::string>(docs.begin(), docs.end()), splits[split]) << split;
    for (const auto& d : docs) EXPECT_TRUE(seen.insert(d).second) << "in two splits: " << d;
  }
}

TEST_F(CorpusTest, OutputIsTheSameBytesForAnyWorkerCountAndChunkSize) {
  encode_corpus(config({"data.workers=1", "data.chunk_bytes=100000000", "data.shard_tokens=500"}));
  const auto one = shard_bytes();
  EXPECT_GT(one.size(), 10u);  // many shards
  for (const auto& settings : std::vector<std::vector<std::string>>{
           {"data.workers=3", "data.chunk_bytes=1"}, {"data.workers=2", "data.chunk_bytes=700"}}) {
    fs::remove_all(root_ / "tokens");
    auto extra = settings;
    extra.push_back("data.shard_tokens=500");
    encode_corpus(config(extra));
    EXPECT_EQ(shard_bytes(), one) << settings[0] << " " << settings[1];
  }
}

TEST_F(CorpusTest, CompressedInputsGiveTheSameTokens) {
  encode_corpus(config({}, {"in/a.jsonl"}));
  const auto plain = shard_bytes();
  std::ifstream in(root_ / "in" / "a.jsonl", std::ios::binary);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  fs::create_directories(root_ / "gz");
  gzFile gz = gzopen((root_ / "gz" / "a.jsonl.gz").c_str(), "wb");
  gzwrite(gz, text.data(), unsigned(text.size()));
  gzclose(gz);
  std::string zst(ZSTD_compressBound(text.size()), '\0');
  zst.resize(ZSTD_compress(zst.data(), zst.size(), text.data(), text.size(), 3));
  write(root_ / "zst" / "a.jsonl.zst", zst);
  for (const auto* pattern : {"gz/*.gz", "zst/*.zst"}) {
    fs::remove_all(root_ / "tokens");
    encode_corpus(config({}, {pattern}));
    EXPECT_EQ(shard_bytes(), plain) << pattern;
  }
}

TEST_F(CorpusTest, BrokenInputsAreOneLineErrorsAndWriteNothing) {
  std::ifstream in(root_ / "in" / "a.jsonl", std::ios::binary);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  std::string zst(ZSTD_compressBound(text.size()), '\0');
  zst.resize(ZSTD_compress(zst.data(), zst.size(), text.data(), text.size(), 3));
  write(root_ / "bad" / "truncated.zst", zst.substr(0, zst.size() / 2));
  fs::create_directories(root_ / "bad");
  gzFile gz = gzopen((root_ / "bad" / "truncated.gz").c_str(), "wb");
  gzwrite(gz, text.data(), unsigned(text.size()));
  gzclose(gz);
  fs::resize_file(root_ / "bad" / "truncated.gz",
                  fs::file_size(root_ / "bad" / "truncated.gz") / 2);
  const auto good = line(document("alpha", 1), "alpha");
  write(root_ / "bad" / "json.jsonl", good + good + "{\"text\": \"unterminated\n");
  write(root_ / "bad" / "utf8.jsonl",
        good + "{\"text\": \"caf\xe9\", \"meta\": {\"source\": \"alpha\"}}\n");
  write(root_ / "bad" / "number.jsonl", R"({"text": 12, "meta": {"source": "alpha"}})"
                                        "\n");
  write(root_ / "bad" / "array.jsonl", "[1, 2]\n");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"bad/truncated.zst", "truncated.zst: truncated zstd stream"},
      {"bad/truncated.gz", "truncated.gz: corrupt or truncated gzip stream"},
      {"bad/json.jsonl", "json.jsonl:3: invalid JSON"},
      {"bad/utf8.jsonl", "utf8.jsonl:2: invalid JSON"},
      {"bad/number.jsonl", "number.jsonl:1: text is a number, expected a string"},
      {"bad/array.jsonl", "array.jsonl:1: expected a JSON object, got array"},
      {"bad/none*.jsonl", "matches no file"}};
  for (const auto& [pattern, expected] : cases) {
    const auto message = error_of(config({}, {"in/a.jsonl", pattern}));
    EXPECT_NE(message.find(expected), std::string::npos) << pattern << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_EQ(files_written(), 0) << pattern;
  }
  // A training domain without documents is refused after the read, and nothing is kept.
  const auto message =
      error_of(config({"data.domains=[beta]", "data.eval_domains=[alpha]"}, {"in/a.jsonl"}));
  EXPECT_NE(message.find("no training documents for 'beta'"), std::string::npos) << message;
  EXPECT_EQ(files_written(), 0);
}

TEST_F(CorpusTest, DocumentCountsPlaceExactlyThatManyInValidAndTest) {
  const auto c = config({"data.valid_documents=7", "data.test_documents=5"});
  encode_corpus(c);
  for (const auto* domain : {"alpha", "beta"}) {
    EXPECT_EQ(documents(c, domain, "test").size(), 5u) << domain;
    EXPECT_EQ(documents(c, domain, "valid").size(), 7u) << domain;
  }
  EXPECT_EQ(documents(c, "alpha", "train").size(), 48u);
}

TEST_F(CorpusTest, TextDirDropsTrainCopiesOfTestDocumentsAndNovelDomainsNeedNoTrainSplit) {
  const std::string sep = "\n\f\n";
  const auto doc = [](int i) { return document("alpha", i); };
  write(root_ / "dir" / "alpha" / "train.txt", doc(0) + sep + doc(1) + sep + doc(9) + sep);
  write(root_ / "dir" / "alpha" / "valid.txt", doc(2) + sep + doc(3) + sep);
  write(root_ / "dir" / "alpha" / "test.txt", doc(9) + sep + doc(4) + sep);
  write(root_ / "dir" / "beta" / "test.txt", document("beta", 0) + sep);
  auto c = config();
  c.data.sources.clear();
  c.data.corpus = (root_ / "dir").string();
  c.model.seq_len = 8;
  encode_corpus(c);
  EXPECT_EQ(documents(c, "alpha", "test"), (std::vector<std::string>{doc(9), doc(4)}));
  EXPECT_EQ(documents(c, "alpha", "train"), (std::vector<std::string>{doc(0), doc(1)}));
  EXPECT_FALSE(fs::exists(split_dir(c, "beta", "train")));
  EXPECT_EQ(documents(c, "beta", "test"), (std::vector<std::string>{document("beta", 0)}));
  // A text_dir split's text size counts each document with its separator: the file's size.
  EXPECT_EQ(open_split(c, "alpha", "test")->info().text_bytes,
            fs::file_size(root_ / "dir" / "alpha" / "test.txt"));
}

TEST_F(CorpusTest, TheTokenizerSampleDoesNotDependOnFileOrder) {
  std::string reversed;
  for (int i = 59; i >= 0; --i) reversed += line(document("alpha", i), "alpha");
  write(root_ / "rev" / "a.jsonl", reversed);
  auto c = config({"tokenizer.sample_bytes_per_domain=4000"}, {"rev/*.jsonl", "in/b.jsonl"});
  c.tokenizer.model = (root_ / "spm2" / "spm.model").string();
  train_tokenizer(c);
  auto d = config({"tokenizer.sample_bytes_per_domain=4000"});
  d.tokenizer.model = (root_ / "spm3" / "spm.model").string();
  train_tokenizer(d);
  // The model files differ in the paths they record; their vocabularies must not.
  const Tokenizer a(c.tokenizer.model), b(d.tokenizer.model);
  ASSERT_EQ(a.vocab_size(), b.vocab_size());
  for (int64_t id = 0; id < a.vocab_size(); ++id) EXPECT_EQ(a.piece(id), b.piece(id)) << id;
}

// The encoder's line-at-a-time path gives exactly sentencepiece's tokens of the whole text.
TEST_F(CorpusTest, EncodingLineByLineEqualsEncodingTheWholeText) {
  const Tokenizer tokenizer(tokenizer_);
  std::vector<std::string> texts = {"", "\n", "\n\n", " a \n", "x\n\n  y  \n z", "tail\n"};
  for (int i = 0; i < 40; ++i)
    texts.push_back(document("alpha", i) + "\n\n " + document("beta", i));
  for (const auto& text : texts) {
    std::vector<uint32_t> appended = {7};
    tokenizer.encode_append(text, appended);
    const auto whole = tokenizer.encode(text);
    EXPECT_EQ(std::vector<uint32_t>(appended.begin() + 1, appended.end()), whole) << text;
  }
}

}  // namespace
}  // namespace demix::data
