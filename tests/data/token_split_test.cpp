#include "demix/data/token_split.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "demix/core/error.h"
#include "demix/data/domain_batcher.h"
#include "demix/data/tokenizer.h"

namespace demix::data {
namespace {

namespace fs = std::filesystem;

std::string temp(const std::string& name) { return (fs::temp_directory_path() / name).string(); }

std::vector<uint32_t> ramp(size_t n, uint32_t offset, uint32_t modulus = 60000) {
  std::vector<uint32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = uint32_t((i * 7 + offset) % modulus);
  return t;
}

// Writes `tokens` as a split of documents of `doc_tokens` tokens each, cut into shards of
// `shard_tokens`.
std::unique_ptr<TokenSplit> write_split(const std::string& dir, const std::vector<uint32_t>& tokens,
                                        uint64_t shard_tokens, SplitInfo info = {},
                                        size_t doc_tokens = 37) {
  SplitWriter writer(dir, shard_tokens, info);
  for (size_t i = 0; i < tokens.size(); i += doc_tokens) {
    const std::vector<uint32_t> doc(tokens.begin() + long(i),
                                    tokens.begin() + long(std::min(tokens.size(), i + doc_tokens)));
    writer.append_document(doc, 10 * doc.size());
  }
  writer.commit();
  return std::make_unique<TokenSplit>(dir);
}

std::vector<int64_t> all_tokens(const TokenSplit& split) {
  std::vector<int64_t> out(split.size());
  split.read(0, out.size(), out.data());
  return out;
}

// read_text accepts exactly what a strict UTF-8 decoder (Python's bytes.decode) accepts.
TEST(TextFileTest, AcceptsUtf8AndNamesTheFirstBadByte) {
  const auto path = temp("demix_utf8.txt");
  const std::vector<std::pair<std::string, int>> cases = {
      {"plain ascii\n", -1},
      {"h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e", -1},  // é, €, U+1D11E
      {"\xef\xbf\xbf\xf4\x8f\xbf\xbf", -1},                // U+FFFF, U+10FFFF
      {"ab\xff", 2},                                       // never valid
      {"\xc0\xaf", 0},                                     // overlong '/'
      {"x\xe0\x80\xaf", 1},                                // overlong, 3 bytes
      {"\xed\xa0\x80", 0},                                 // surrogate U+D800
      {"\xf4\x90\x80\x80", 0},                             // above U+10FFFF
      {"ok \xe2\x82", 3},                                  // truncated sequence
      {"\x80", 0},                                         // lone continuation byte
  };
  for (const auto& [bytes, bad_offset] : cases) {
    std::ofstream(path, std::ios::binary) << bytes;
    if (bad_offset < 0) {
      EXPECT_EQ(read_text(path), bytes);
      continue;
    }
    try {
      read_text(path);
      ADD_FAILURE() << "accepted invalid UTF-8 at offset " << bad_offset;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("at offset " + std::to_string(bad_offset) + ")"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(TokenSplitTest, RoundTripsTokensAcrossShards) {
  const auto tokens = ramp(1000, 3);
  const auto split = write_split(temp("demix_split_roundtrip"), tokens, 97);
  EXPECT_EQ(split->size(), 1000u);
  EXPECT_EQ(split->shard_count(), 11u);     // ceil(1000 / 97)
  EXPECT_EQ(split->info().documents, 28u);  // ceil(1000 / 37)
  EXPECT_EQ(split->info().text_bytes, 10000u);
  EXPECT_EQ(split->info().token_bytes, 2u);
  EXPECT_EQ(all_tokens(*split), std::vector<int64_t>(tokens.begin(), tokens.end()));
  // Every range, shard boundaries included, reads the same tokens.
  std::vector<int64_t> window(200);
  for (uint64_t start : {0, 90, 96, 97, 193, 800}) {
    split->read(start, 200, window.data());
    EXPECT_TRUE(std::equal(window.begin(), window.end(), tokens.begin() + long(start))) << start;
  }
  EXPECT_THROW(split->read(900, 101, window.data()), Error);
}

TEST(TokenSplitTest, WideVocabulariesStoreFourBytesATokenAndMaxTokenFindsTheFirstLargest) {
  EXPECT_EQ(token_bytes_for(65536), 2u);
  EXPECT_EQ(token_bytes_for(65537), 4u);
  SplitInfo info;
  info.vocab_size = 100000;
  info.token_bytes = token_bytes_for(info.vocab_size);
  auto tokens = ramp(500, 11, 100000);
  tokens[123] = 99999;
  tokens[456] = 99999;
  const auto split = write_split(temp("demix_split_wide"), tokens, 64, info);
  EXPECT_EQ(split->info().token_bytes, 4u);
  EXPECT_EQ(all_tokens(*split), std::vector<int64_t>(tokens.begin(), tokens.end()));
  EXPECT_EQ(split->max_token(), (std::pair<uint32_t, uint64_t>{99999, 123}));
}

TEST(TokenSplitTest, AnUncommittedWriterLeavesNothingAndCommitReplacesTheOldSplit) {
  const auto dir = temp("demix_split_replace");
  write_split(dir, ramp(300, 1), 100);
  {
    SplitWriter abandoned(dir, 100, {});
    abandoned.append_document(ramp(50, 2), 5);
  }  // e.g. an error while encoding: the old split is untouched and no temporary is left
  EXPECT_EQ(TokenSplit(dir).size(), 300u);
  for (const auto& entry : fs::directory_iterator(fs::path(dir).parent_path()))
    EXPECT_EQ(entry.path().filename().string().find("demix_split_replace.tmp"), std::string::npos);
  write_split(dir, ramp(120, 4), 100);
  EXPECT_EQ(TokenSplit(dir).size(), 120u);
  EXPECT_EQ(TokenSplit(dir).shard_count(), 2u);  // no shard of the old split is left behind
  EXPECT_FALSE(fs::exists(dir + "/00002.bin"));
}

TEST(TokenSplitTest, RejectsTruncatedForeignAndMissingSplits) {
  const auto dir = temp("demix_split_bad");
  write_split(dir, ramp(100, 0), 64);
  fs::resize_file(dir + "/00001.bin", 64 + 10);
  auto message = [](const std::string& d) {
    try {
      TokenSplit split(d);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(dir).find("00001.bin: size does not match"), std::string::npos) << message(dir);
  std::ofstream(dir + "/00001.bin", std::ios::trunc) << std::string(200, 'x');
  EXPECT_NE(message(dir).find("not a demix token file"), std::string::npos) << message(dir);
  EXPECT_NE(message(temp("demix_no_such_split")).find("no encoded split"), std::string::npos);
}

class DomainBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int d = 0; d < 3; ++d) {
      const auto name = temp("demix_batcher_" + std::to_string(d));
      const auto tokens = ramp(500 + 300 * d, uint32_t(d * 1000));
      files_.push_back(write_split(name, tokens, 1 << 20));
      sharded_.push_back(write_split(name + "_sharded", tokens, 29 + 10 * d));
    }
  }
  DomainBatcher make(Sampling sampling, uint64_t seed = 5, bool sharded = false) {
    const auto& f = sharded ? sharded_ : files_;
    return DomainBatcher({f[0].get(), f[1].get(), f[2].get()}, {0, 1, 2}, 4, 16, sampling, seed);
  }
  std::vector<std::unique_ptr<TokenSplit>> files_;    // one shard each
  std::vector<std::unique_ptr<TokenSplit>> sharded_;  // the same tokens in shards of 29..49
};

TEST_F(DomainBatcherTest, KSequencesPerDomainFromThatDomainsFile) {
  auto batcher = make(Sampling::kBalanced);
  const auto batch = batcher.next();
  ASSERT_EQ(batch.inputs.sizes(), (std::vector<int64_t>{12, 16}));
  EXPECT_EQ(batch.domains, (std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}));
  for (int64_t r = 0; r < 12; ++r) {
    const auto tokens = all_tokens(*files_[size_t(batch.domains[size_t(r)])]);
    // The row must be a window of its domain's tokens, and targets the next tokens.
    const auto first = batch.inputs[r][0].item<int64_t>();
    bool found = false;
    for (uint64_t start = 0; start + 17 <= tokens.size() && !found; ++start) {
      if (tokens[start] != first) continue;
      bool all = true;
      for (int64_t t = 0; t < 16; ++t)
        all = all && batch.inputs[r][t].item<int64_t>() == tokens[start + t] &&
              batch.targets[r][t].item<int64_t>() == tokens[start + t + 1];
      found = all;
    }
    EXPECT_TRUE(found) << "row " << r;
  }
}

TEST_F(DomainBatcherTest, SameSeedSameStreamAndExactResume) {
  auto a = make(Sampling::kBalanced), b = make(Sampling::kBalanced);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(torch::equal(a.next().inputs, b.next().inputs));
  const auto cursor = a.cursor();
  const auto expected = a.next().inputs;
  auto resumed = make(Sampling::kBalanced);
  resumed.set_cursor(cursor);
  EXPECT_TRUE(torch::equal(resumed.next().inputs, expected));
  auto other = make(Sampling::kBalanced, /*seed=*/6);
  EXPECT_FALSE(torch::equal(other.next().inputs, make(Sampling::kBalanced).next().inputs));
}

TEST_F(DomainBatcherTest, ReplicasSplitTheRowsOfOneLargerStream) {
  // Two replicas drawing 2 rows of domain 1 each = one stream drawing 4 rows of it.
  std::vector<const TokenSplit*> files = {files_[0].get(), files_[1].get(), files_[2].get()};
  DomainBatcher one(files, {1}, 4, 16, Sampling::kBalanced, 5);
  DomainBatcher first(files, {1}, 2, 16, Sampling::kBalanced, 5, /*first_row=*/0);
  DomainBatcher second(files, {1}, 2, 16, Sampling::kBalanced, 5, /*first_row=*/2);
  for (int step = 0; step < 3; ++step) {
    const auto whole = one.next().inputs;
    EXPECT_TRUE(torch::equal(torch::cat({first.next().inputs, second.next().inputs}), whole));
  }
}

TEST_F(DomainBatcherTest, NaturalSamplingReplicasSplitTheRowsOfOneLargerStream) {
  // Two replicas drawing 6 rows each hold, domain by domain, the 12 rows of one stream.
  std::vector<const TokenSplit*> files = {files_[0].get(), files_[1].get(), files_[2].get()};
  DomainBatcher one(files, {0, 1, 2}, 4, 16, Sampling::kNatural, 5);
  DomainBatcher first(files, {0, 1, 2}, 2, 16, Sampling::kNatural, 5, /*first_row=*/0);
  DomainBatcher second(files, {0, 1, 2}, 2, 16, Sampling::kNatural, 5, /*first_row=*/6);
  const auto of_domain = [](const Batch& batch, int64_t d) {
    std::vector<at::Tensor> rows;
    for (size_t r = 0; r < batch.domains.size(); ++r)
      if (batch.domains[r] == d) rows.push_back(batch.inputs[int64_t(r)]);
    return rows.empty() ? at::empty({0, 16}, at::kLong) : at::stack(rows);
  };
  for (int step = 0; step < 3; ++step) {
    const auto whole = one.next(), a = first.next(), b = second.next();
    for (int64_t d = 0; d < 3; ++d)
      EXPECT_TRUE(torch::equal(at::cat({of_domain(a, d), of_domain(b, d)}), of_domain(whole, d)))
          << "step " << step << ", domain " << d;
  }
}

TEST_F(DomainBatcherTest, NaturalSamplingFollowsTokenShares) {
  auto batcher = make(Sampling::kNatural);
  std::vector<double> count(3);
  for (int i = 0; i < 400; ++i)
    for (auto d : batcher.next().domains) count[size_t(d)] += 1;
  const double total = count[0] + count[1] + count[2];
  const double share[3] = {500.0 / 2400, 800.0 / 2400, 1100.0 / 2400};
  for (int d = 0; d < 3; ++d) EXPECT_NEAR(count[d] / total, share[d], 0.02) << d;
}

TEST_F(DomainBatcherTest, EvalWindowsTileTheFile) {
  const auto w = eval_windows(*files_[1], 16, 0);
  const auto tokens = all_tokens(*files_[1]);
  EXPECT_EQ(w.inputs.size(0), (800 - 1) / 16);
  for (int64_t i = 0; i < w.inputs.size(0); ++i) {
    EXPECT_EQ(w.inputs[i][0].item<int64_t>(), tokens[size_t(i * 16)]);
    EXPECT_EQ(w.targets[i][15].item<int64_t>(), tokens[size_t(i * 16 + 16)]);
  }
  EXPECT_EQ(eval_windows(*files_[1], 16, 64).inputs.size(0), 4);
}

// Many small shards: windows, natural sampling and resume equal those of one file of the same
// tokens.
TEST_F(DomainBatcherTest, ShardedSplitsGiveTheBatchesOfOneFile) {
  for (auto sampling : {Sampling::kBalanced, Sampling::kNatural}) {
    auto one = make(sampling, 7), sharded = make(sampling, 7, /*sharded=*/true);
    for (int i = 0; i < 20; ++i) {
      const auto a = one.next(), b = sharded.next();
      EXPECT_TRUE(torch::equal(a.inputs, b.inputs)) << i;
      EXPECT_TRUE(torch::equal(a.targets, b.targets)) << i;
      EXPECT_EQ(a.domains, b.domains) << i;
    }
    auto resumed = make(sampling, 7, /*sharded=*/true);
    resumed.set_cursor(one.cursor());
    EXPECT_TRUE(torch::equal(resumed.next().inputs, one.next().inputs));
  }
  for (int d = 0; d < 3; ++d) {
    EXPECT_GT(sharded_[size_t(d)]->shard_count(), 10u);
    const auto a = eval_windows(*files_[size_t(d)], 16, 0),
               b = eval_windows(*sharded_[size_t(d)], 16, 0);
    EXPECT_TRUE(torch::equal(a.inputs, b.inputs) && torch::equal(a.targets, b.targets)) << d;
  }
}

}  // namespace
}  // namespace demix::data
