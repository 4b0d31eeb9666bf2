// demix cluster on the bundled corpus: every training document lands in exactly one cluster,
// unchanged; sizes within 1; the same seed writes the same bytes; the manifest's NMI is its
// table's; and an existing output is refused untouched.

#include "demix/cluster/cluster_corpus.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>

#include "demix/core/error.h"
#include "demix/core/file.h"
#include "demix/core/json.h"
#include "demix/data/corpus.h"
#include "demix/data/document_source.h"
#include "demix/data/tokenizer.h"

namespace demix {
namespace {
namespace fs = std::filesystem;

Config cluster_config() {
  // chunks of 700 documents: several balanced chunks, balanced overall
  return load_config("configs/tiny.yaml",
                     {"cluster.k=5", "cluster.svd_dims=24", "cluster.sample_documents=600",
                      "cluster.chunk_documents=700"});
}

std::vector<std::string> documents_of(const std::string& path) {
  const auto text = data::read_text(path);
  std::vector<std::string> out;
  const std::string sep(data::kDocumentSeparator);
  size_t start = 0;
  for (size_t end; (end = text.find(sep, start)) != std::string::npos; start = end + sep.size())
    out.push_back(text.substr(start, end - start));
  if (start < text.size()) out.push_back(text.substr(start));
  return out;
}

class ClusterCorpusTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = (fs::temp_directory_path() / ("demix_cluster." + std::to_string(::getpid()))).string();
    fs::remove_all(root_);
    fs::create_directories(root_);
    cluster::write_cluster_corpus(cluster_config(), root_ + "/a");
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static std::string root_;
};
std::string ClusterCorpusTest::root_;

TEST_F(ClusterCorpusTest, EveryTrainingDocumentIsInOneClusterUnchangedAndSizesAreWithinOne) {
  const auto config = cluster_config();
  const data::Tokenizer tokenizer(config.tokenizer.model);
  // the source documents, decoded from the encoded splits
  std::vector<std::string> source;
  for (const auto& d : config.data.domains) {
    const auto split = data::open_split(config, d, "train");
    std::vector<int64_t> tokens(split->size());
    split->read(0, tokens.size(), tokens.data());
    std::vector<int64_t> doc;
    for (auto t : tokens) {
      if (t == tokenizer.eos_id()) {
        source.push_back(tokenizer.decode(doc));
        doc.clear();
      } else {
        doc.push_back(t);
      }
    }
  }
  std::vector<std::string> clustered;
  std::vector<size_t> sizes;
  const auto manifest = read_json_file(root_ + "/a/MANIFEST.json", "manifest");
  for (const auto& c : manifest.at("clusters")) {
    const auto docs = documents_of(root_ + "/a/" + c.at("name").get<std::string>() + "/train.txt");
    EXPECT_EQ(int64_t(docs.size()), c.at("train_documents").get<int64_t>());
    sizes.push_back(docs.size());
    clustered.insert(clustered.end(), docs.begin(), docs.end());
  }
  ASSERT_EQ(sizes.size(), 5u);
  EXPECT_LE(
      *std::max_element(sizes.begin(), sizes.end()) - *std::min_element(sizes.begin(), sizes.end()),
      1u);
  std::sort(source.begin(), source.end());
  std::sort(clustered.begin(), clustered.end());
  EXPECT_EQ(clustered.size(), source.size());
  EXPECT_TRUE(clustered == source);
  // each source domain's held-out text is there to evaluate on, document for document
  const auto test_docs = documents_of(root_ + "/a/scripture/test.txt");
  EXPECT_EQ(uint64_t(test_docs.size()),
            data::open_split(config, "scripture", "test")->info().documents);
}

TEST_F(ClusterCorpusTest, TheSameSeedWritesTheSameBytes) {
  cluster::write_cluster_corpus(cluster_config(), root_ + "/b");
  auto bytes = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  for (const auto* file : {"cluster_00/train.txt", "cluster_04/test.txt", "router.safetensors",
                           "MANIFEST.json", "purity.md"}) {
    EXPECT_FALSE(bytes(root_ + "/a/" + file).empty()) << file;
    EXPECT_EQ(bytes(root_ + "/a/" + file), bytes(root_ + "/b/" + file)) << file;
  }
}

TEST_F(ClusterCorpusTest, ManifestNmiIsItsTablesAndTheConfigLoads) {
  const auto manifest = read_json_file(root_ + "/a/MANIFEST.json", "manifest");
  // NMI = (H(C) + H(L) - H(C, L)) / ((H(C) + H(L)) / 2), from the cluster x label counts
  std::map<std::string, double> by_label;
  std::vector<double> by_cluster, joint;
  double n = 0;
  for (const auto& c : manifest.at("clusters")) {
    double size = 0;
    for (const auto& [label, count] : c.at("labels").items()) {
      by_label[label] += count.get<double>();
      joint.push_back(count.get<double>());
      size += count.get<double>();
    }
    by_cluster.push_back(size);
    n += size;
  }
  auto entropy = [n](const std::vector<double>& counts) {
    double h = 0;
    for (auto c : counts) h -= c / n * std::log(c / n);
    return h;
  };
  std::vector<double> labels;
  for (const auto& [l, c] : by_label) labels.push_back(c);
  const double hc = entropy(by_cluster), hl = entropy(labels), hj = entropy(joint);
  EXPECT_NEAR(manifest.at("normalized_mutual_information").get<double>(),
              (hc + hl - hj) / ((hc + hl) / 2), 1e-9);
  const auto config = load_config(root_ + "/a/config.yaml");
  EXPECT_EQ(config.data.domains.size(), 5u);
  EXPECT_EQ(config.data.domains[0], "cluster_00");
  EXPECT_EQ(config.eval.router, root_ + "/a/router.safetensors");
}

TEST_F(ClusterCorpusTest, TokenBalanceGivesClustersOfEqualTokens) {
  auto config = cluster_config();
  config.cluster.balance = ClusterBalance::kTokens;
  cluster::write_cluster_corpus(config, root_ + "/tokens");
  const auto manifest = read_json_file(root_ + "/tokens/MANIFEST.json", "manifest");
  std::vector<double> tokens;
  for (const auto& c : manifest.at("clusters"))
    tokens.push_back(c.at("train_tokens").get<double>());
  const auto [low, high] = std::minmax_element(tokens.begin(), tokens.end());
  const double mean = std::accumulate(tokens.begin(), tokens.end(), 0.0) / double(tokens.size());
  EXPECT_LT((*high - *low) / mean, 0.01) << "token loads " << *low << " .. " << *high;
  EXPECT_EQ(manifest.at("balance").get<std::string>(), "tokens");
}

TEST_F(ClusterCorpusTest, AnExistingOutputIsRefusedUntouched) {
  const auto before = data::read_text(root_ + "/a/purity.md");
  try {
    cluster::write_cluster_corpus(cluster_config(), root_ + "/a");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exists"), std::string::npos) << e.what();
  }
  EXPECT_EQ(data::read_text(root_ + "/a/purity.md"), before);
}

}  // namespace
}  // namespace demix
