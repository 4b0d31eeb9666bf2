#include "demix/data/token_file.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "demix/core/error.h"
#include "demix/data/domain_batcher.h"
#include "demix/data/tokenizer.h"

namespace demix::data {
namespace {

std::string temp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / name).string();
}

std::vector<uint16_t> ramp(size_t n, uint16_t offset) {
  std::vector<uint16_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = uint16_t((i * 7 + offset) % 60000);
  return t;
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

TEST(TokenFileTest, RoundTripsTokensAndHeader) {
  const auto path = temp("demix_tokens.bin");
  const auto tokens = ramp(1000, 3);
  write_token_file(path, tokens, {0, 17, 4321, 60000, 99});
  TokenFile file(path);
  EXPECT_EQ(file.size(), 1000u);
  EXPECT_EQ(file.header().documents, 17u);
  EXPECT_EQ(file.header().text_bytes, 4321u);
  EXPECT_EQ(file.header().tokenizer_fingerprint, 99u);
  EXPECT_TRUE(std::equal(tokens.begin(), tokens.end(), file.tokens()));
}

TEST(TokenFileTest, RejectsTruncatedAndForeignFiles) {
  const auto path = temp("demix_tokens_bad.bin");
  write_token_file(path, ramp(100, 0), {});
  std::filesystem::resize_file(path, 64 + 150);
  EXPECT_THROW(TokenFile{path}, Error);
  std::ofstream(path, std::ios::trunc) << std::string(200, 'x');
  try {
    TokenFile file(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a demix token file"), std::string::npos);
  }
  EXPECT_THROW(TokenFile{temp("demix_no_such_file.bin")}, Error);
}

class DomainBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int d = 0; d < 3; ++d) {
      const auto path = temp("demix_batcher_" + std::to_string(d) + ".bin");
      write_token_file(path, ramp(500 + 300 * d, uint16_t(d * 1000)), {});
      files_.push_back(std::make_unique<TokenFile>(path));
    }
  }
  DomainBatcher make(Sampling sampling, uint64_t seed = 5) {
    return DomainBatcher({files_[0].get(), files_[1].get(), files_[2].get()}, {0, 1, 2}, 4, 16,
                         sampling, seed);
  }
  std::vector<std::unique_ptr<TokenFile>> files_;
};

TEST_F(DomainBatcherTest, KSequencesPerDomainFromThatDomainsFile) {
  auto batcher = make(Sampling::kBalanced);
  const auto batch = batcher.next();
  ASSERT_EQ(batch.inputs.sizes(), (std::vector<int64_t>{12, 16}));
  EXPECT_EQ(batch.domains, (std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}));
  for (int64_t r = 0; r < 12; ++r) {
    const auto& file = *files_[size_t(batch.domains[size_t(r)])];
    // The row must be a window of its domain's tokens, and targets the next tokens.
    const auto first = uint16_t(batch.inputs[r][0].item<int64_t>());
    bool found = false;
    for (uint64_t start = 0; start + 17 <= file.size() && !found; ++start) {
      if (file.tokens()[start] != first) continue;
      bool all = true;
      for (int64_t t = 0; t < 16; ++t)
        all = all && batch.inputs[r][t].item<int64_t>() == file.tokens()[start + t] &&
              batch.targets[r][t].item<int64_t>() == file.tokens()[start + t + 1];
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
  std::vector<const TokenFile*> files = {files_[0].get(), files_[1].get(), files_[2].get()};
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
  std::vector<const TokenFile*> files = {files_[0].get(), files_[1].get(), files_[2].get()};
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
  EXPECT_EQ(w.inputs.size(0), (800 - 1) / 16);
  for (int64_t i = 0; i < w.inputs.size(0); ++i) {
    EXPECT_EQ(w.inputs[i][0].item<int64_t>(), files_[1]->tokens()[i * 16]);
    EXPECT_EQ(w.targets[i][15].item<int64_t>(), files_[1]->tokens()[i * 16 + 16]);
  }
  EXPECT_EQ(eval_windows(*files_[1], 16, 64).inputs.size(0), 4);
}

}  // namespace
}  // namespace demix::data
