#pragma once

// One validated configuration. Values layer as defaults < YAML file < `--set section.key=value`.
// Every section lists its fields once, in `visit`, with a one-line doc; loading, overriding,
// saving and `demix config --help`-style listings all walk that one list, so a key can be
// followed from YAML to its use with a single grep. Choice keys are enums (config_choices.h).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "demix/core/config_choices.h"

namespace demix {

struct ModelConfig {
  int64_t vocab_size = 4096;
  int64_t seq_len = 128;
  int64_t d_model = 128;
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t d_ff = 0;  // 0 = 4 * d_model
  FeedForward ff = FeedForward::kDemix;
  std::vector<int64_t> demix_layers;  // empty = every layer
  bool domain_token = false;
  ExpertScope expert_scope = ExpertScope::kFf;
  int64_t lora_rank = 0;
  double lora_alpha = 16;
  double init_std = 0.02;

  template <class V>
  void visit(V& v) {
    v("vocab_size", vocab_size, "tokenizer vocabulary size (also the embedding rows)");
    v("seq_len", seq_len, "tokens per training sequence (the model's context length)");
    v("d_model", d_model, "residual stream width");
    v("n_layer", n_layer, "number of transformer blocks");
    v("n_head", n_head, "attention heads per block; must divide d_model");
    v("d_ff", d_ff, "hidden width of each FF block or expert; 0 means 4*d_model");
    v("ff", ff, "demix (one FF expert per training domain) or dense (one shared FF)");
    v("demix_layers", demix_layers, "indices of the blocks whose FF is a DEMix layer; [] = all");
    v("domain_token", domain_token, "prepend a learned per-domain token (+DOMAIN-TOKEN baseline)");
    v("expert_scope", expert_scope,
      "ff (a DEMix expert is an FF block) or block (a whole transformer block per domain, "
      "attention and LayerNorms too)");
    v("lora_rank", lora_rank,
      "> 0: LoRA adapters of this rank on every attention and FF projection; only they train");
    v("lora_alpha", lora_alpha, "LoRA scale: the adapter's output is multiplied by alpha/rank");
    v("init_std", init_std, "std of the normal initialisation of weights");
  }
};

// One input of `demix data`: files of JSON lines, or a directory laid out as
// <dir>/<domain>/<split>.txt.
struct SourceConfig {
  SourceFormat format = SourceFormat::kJsonl;
  std::vector<std::string> paths;
  std::string text_field = "text";
  std::string domain_field;
  std::string domain;
  SourceSplit split = SourceSplit::kHash;

  template <class V>
  void visit(V& v) {
    v("format", format,
      "jsonl (one JSON object per line; plain, gzip or zstd, told by the first bytes) or text_dir "
      "(<dir>/<domain>/<split>.txt, documents separated by a form-feed line)");
    v("paths", paths, "jsonl: files or globs, read in sorted order; text_dir: the one directory");
    v("text_field", text_field, "jsonl: the document's text, a dotted path (e.g. text)");
    v("domain_field", domain_field,
      "jsonl: the document's domain, a dotted path (e.g. meta.pile_set_name)");
    v("domain", domain, "jsonl: one domain for every document of these files instead");
    v("split", split,
      "jsonl: hash (each document's split is a hash of its text) or train, valid, test for "
      "every document of these files");
  }
};

struct DataConfig {
  std::string corpus = "data/demix12";
  std::vector<SourceConfig> sources;
  std::vector<std::string> domains;       // training domains = experts, in expert order
  std::vector<std::string> eval_domains;  // extra (novel) domains for evaluation
  std::string tokens_dir = "data/tokens";
  double valid_fraction = 0.01;
  double test_fraction = 0.01;
  int64_t valid_documents = 0;
  int64_t test_documents = 0;
  uint64_t split_seed = 0;
  bool dedup = true;
  int64_t workers = 0;
  int64_t memory_mb = 256;
  int64_t chunk_bytes = 1 << 20;
  int64_t shard_tokens = int64_t(1) << 27;
  int64_t sequences_per_domain = 2;
  DataSampling sampling = DataSampling::kBalanced;
  uint64_t seed = 1234;

  template <class V>
  void visit(V& v) {
    v("corpus", corpus,
      "directory holding <domain>/{train,valid,test}.txt; the input when data.sources is []");
    v("sources", sources, "inputs of `demix data` (keys data.sources[].*); [] = data.corpus");
    v("domains", domains, "training domains; with ff=demix each one gets an expert");
    v("eval_domains", eval_domains, "held-out novel domains, evaluated but never trained on");
    v("tokens_dir", tokens_dir,
      "where the encoded splits go (<dir>/<domain>/<split>/: index.json and token shards)");
    v("valid_fraction", valid_fraction, "hash splits: share of each domain's documents in valid");
    v("test_fraction", test_fraction, "hash splits: share of each domain's documents in test");
    v("valid_documents", valid_documents,
      "hash splits: documents of each domain in valid; if this or test_documents is > 0, both "
      "splits are sized by these counts instead of the fractions");
    v("test_documents", test_documents,
      "hash splits: documents of each domain in test (see valid_documents)");
    v("split_seed", split_seed, "seed of the hash that assigns documents to splits");
    v("dedup", dedup, "drop exact duplicate documents (the first one read is kept)");
    v("workers", workers, "encoding threads; 0 = every core");
    v("memory_mb", memory_mb, "bound on the text and tokens `demix data` holds in flight");
    v("chunk_bytes", chunk_bytes, "text handed to an encoding thread at a time");
    v("shard_tokens", shard_tokens, "tokens per shard file of an encoded split");
    v("sequences_per_domain", sequences_per_domain,
      "k: sequences per domain in each micro-batch (natural sampling draws k*E sequences)");
    v("sampling", sampling,
      "balanced (k per domain) or natural (domains in proportion to their training tokens)");
    v("seed", seed, "seed of the data stream (window positions and domain draws)");
  }
};

struct TokenizerConfig {
  std::string model = "data/tokens/spm.model";
  TokenizerType type = TokenizerType::kBpe;
  int64_t sample_bytes_per_domain = 400000;

  template <class V>
  void visit(V& v) {
    v("model", model, "sentencepiece model file (trained by `demix tokenizer`)");
    v("type", type, "bpe or unigram");
    v("sample_bytes_per_domain", sample_bytes_per_domain,
      "train-split text sampled from each training domain (by a hash of each document, read as a "
      "stream), so that domains weigh the same");
  }
};

struct OptimConfig {
  double lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup_steps = 20;
  LrShape schedule = LrShape::kCosine;
  double poly_power = 1.0;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;

  template <class V>
  void visit(V& v) {
    v("lr", lr, "peak learning rate, reached after warm-up");
    v("min_lr", min_lr, "learning rate at the last step");
    v("warmup_steps", warmup_steps, "linear warm-up from 0 to lr");
    v("schedule", schedule, "decay after warm-up: cosine, linear or poly");
    v("poly_power", poly_power, "exponent of the poly schedule (1 = linear)");
    v("weight_decay", weight_decay, "decoupled AdamW decay; never on biases, norms, embeddings");
    v("beta1", beta1, "AdamW beta1");
    v("beta2", beta2, "AdamW beta2");
    v("eps", eps, "AdamW epsilon");
    v("grad_clip", grad_clip, "clip the global gradient norm to this; 0 disables");
  }
};

struct TrainConfig {
  int64_t steps = 200;
  int64_t grad_accum = 1;
  uint64_t seed = 1337;
  int64_t threads = 0;
  std::string device = "cpu";
  Precision precision = Precision::kFp32;
  std::string out_dir = "runs/tiny";
  int64_t log_every = 10;
  int64_t eval_every = 100;
  int64_t eval_tokens = 8192;
  int64_t checkpoint_every = 0;
  int64_t keep_checkpoints = 2;
  std::string init_from;
  std::vector<std::string> train_domains;
  Trainable trainable = Trainable::kAll;
  NonFinite nonfinite = NonFinite::kSkip;
  int64_t nonfinite_limit = 10;
  bool fused_cuda_kernels = false;
  CpuGemmChoice cpu_gemm = CpuGemmChoice::kAuto;

  template <class V>
  void visit(V& v) {
    v("steps", steps, "optimizer steps");
    v("grad_accum", grad_accum, "micro-batches accumulated per optimizer step");
    v("seed", seed, "seed of the parameter initialisation");
    v("threads", threads, "intra-op CPU threads; 0 = all cores");
    v("cpu_gemm", cpu_gemm,
      "library of the fp32 GEMMs on a CPU: aten (MKL), openblas (Debian's libopenblas0-openmp), "
      "or auto: openblas on AMD CPUs, where MKL is slow (include/demix/ops/cpu/cpu_gemm.h)");
    v("device", device, "cpu, cuda or cuda:N");
    v("precision", precision,
      "fp32, or bf16: forward matmuls and attention under bfloat16 autocast; parameters, "
      "gradients, AdamW state and the loss stay fp32");
    v("out_dir", out_dir, "run directory: metrics.jsonl, config.yaml, checkpoints/");
    v("log_every", log_every, "steps between progress lines");
    v("eval_every", eval_every, "steps between validation passes; 0 = only at the end");
    v("eval_tokens", eval_tokens, "validation tokens per domain in each pass");
    v("checkpoint_every", checkpoint_every, "steps between checkpoints; 0 = only at the end");
    v("keep_checkpoints", keep_checkpoints, "number of newest checkpoints kept");
    v("init_from", init_from, "checkpoint whose parameters start a fresh run (adaptation)");
    v("train_domains", train_domains, "domains the batches are drawn from; [] = data.domains");
    v("trainable", trainable,
      "all; experts (only the experts of train_domains, all else frozen: DEMix-DAPT); "
      "or ff (only FF layers)");
    v("nonfinite", nonfinite,
      "a step whose global gradient norm is NaN or inf: skip (no update, counted) or stop");
    v("nonfinite_limit", nonfinite_limit,
      "skip: stop after this many non-finite steps in a row (checked every log_every steps); "
      "0 = never");
    v("fused_cuda_kernels", fused_cuda_kernels,
      "CUDA: the experts as one node with fused GELU and bias-gradient kernels (not yet run on "
      "a GPU: see include/demix/ops/execution_policy.h)");
  }
};

struct EvalConfig {
  std::vector<std::string> splits = {"valid", "test"};
  int64_t max_tokens = 65536;
  int64_t batch_size = 8;
  EvalPrior prior = EvalPrior::kUniform;
  double alpha = 0.3;
  EvalPosterior posterior = EvalPosterior::kPrefix;
  int64_t top_k = 2;
  int64_t prior_blocks = 100;
  int64_t mix_max_tokens = 8192;
  std::string router;
  double router_temperature = 0.1;
  int64_t router_every = 32;

  template <class V>
  void visit(V& v) {
    v("splits", splits, "splits to evaluate");
    v("max_tokens", max_tokens, "tokens per domain and split (0 = the whole split)");
    v("batch_size", batch_size, "sequences per evaluation forward");
    v("prior", prior, "expert prior for mixing: uniform, updating or cached");
    v("alpha", alpha, "updating prior: weight of each batch's mean block posterior");
    v("posterior", posterior,
      "prefix (P(D|x<t) from the whole prefix) or last_token (the paper code's variant)");
    v("top_k", top_k, "experts run by top-k mixing (those with the largest prior)");
    v("prior_blocks", prior_blocks, "held-out blocks of the target domain for the cached prior");
    v("mix_max_tokens", mix_max_tokens, "tokens per domain in the mixing table (0 = all)");
    v("router", router,
      "cluster router file (demix cluster or demix router): adds router top-1 and top-k mixing");
    v("router_temperature", router_temperature, "router weights softmax(-d^2 / temperature)");
    v("router_every", router_every,
      "the router re-reads the text before each run of this many scored tokens");
  }
};

struct DistConfig {
  DistBackend backend = DistBackend::kAuto;
  int64_t timeout_s = 300;
  int64_t bucket_mb = 25;
  bool overlap = true;

  template <class V>
  void visit(V& v) {
    v("backend", backend, "auto (nccl on cuda, gloo on cpu), gloo or nccl");
    v("timeout_s", timeout_s,
      "c10d collective timeout: a dead or hung rank fails the run after it");
    v("bucket_mb", bucket_mb, "gradient all-reduce bucket size in MiB");
    v("overlap", overlap, "start each bucket's all-reduce during backward, once it is complete");
  }
};

struct AdaptConfig {
  std::string base;
  std::string domain;
  AdaptInit init = AdaptInit::kClosest;

  template <class V>
  void visit(V& v) {
    v("base", base, "checkpoint (or run directory) to adapt");
    v("domain", domain, "the new domain (its corpus text must exist)");
    v("init", init,
      "DEMix: the new expert starts from the closest expert by cached prior "
      "(closest) or the prior-weighted average of all experts (merge)");
  }
};

// `demix cluster` (c-BTM, Gururangan et al. 2023): tf-idf features of the training documents'
// token ids, optionally reduced by truncated SVD, clustered by balanced k-means fitted on a
// sample and then applied to every document.
struct ClusterConfig {
  int64_t k = 8;
  int64_t svd_dims = 100;
  int64_t sample_documents = 20000;
  int64_t iterations = 20;
  int64_t seed = 1234;
  int64_t chunk_documents = 16384;
  ClusterBalance balance = ClusterBalance::kDocuments;

  template <class V>
  void visit(V& v) {
    v("k", k, "clusters (the new corpus's domains cluster_00 ...)");
    v("svd_dims", svd_dims, "truncated SVD dimensions of the tf-idf features (0 = no SVD)");
    v("sample_documents", sample_documents,
      "training documents drawn to fit the idf, SVD and centres");
    v("iterations", iterations, "balanced k-means iterations at most");
    v("seed", seed, "seed of the document order, SVD and k-means");
    v("chunk_documents", chunk_documents,
      "documents assigned together (balanced within each chunk, and overall)");
    v("balance", balance,
      "documents (equal document counts, within 1) or tokens (equal token counts, within about "
      "one document)");
  }
};

// Modular Domain Experts (Schafhalter et al., 2024): a frozen dense backbone split by depth into
// `blocks`; each block gets one stack of transformer layers per domain beside its backbone layers,
// mixed per token by a gate softmax(Linear(x)) with one output per branch.
struct ModeConfig {
  int64_t blocks = 0;
  int64_t layers_per_expert = 1;
  int64_t stage = 1;
  std::string backbone;
  std::string experts_from;
  ModeTrain train = ModeTrain::kGatesExperts;
  ExpertInit expert_init = ExpertInit::kBackbone;
  ModePlacement placement = ModePlacement::kDataParallel;

  template <class V>
  void visit(V& v) {
    v("blocks", blocks, "0: off; else the backbone's layers split into this many blocks");
    v("layers_per_expert", layers_per_expert, "transformer layers in each expert stack");
    v("stage", stage,
      "1: one single-expert model per data.domains entry, each trained on its domain alone "
      "(<out_dir>/<domain>); 2: compose them and fine-tune on the mixed domains");
    v("backbone", backbone, "checkpoint of the frozen DENSE backbone (stage 1)");
    v("experts_from", experts_from, "stage 2: the stage-1 out_dir holding <domain>/ runs");
    v("train", train, "stage 2: gates_experts (gates and experts train) or gates (gates only)");
    v("expert_init", expert_init,
      "stage 1: backbone (a stack copies the block's last backbone layers) or random");
    v("placement", placement,
      "data_parallel (every rank runs every branch) or branches (rank 0 the backbone, rank j "
      "expert j; they exchange block outputs)");
  }
};

struct Config {
  ModelConfig model;
  DataConfig data;
  TokenizerConfig tokenizer;
  OptimConfig optim;
  TrainConfig train;
  EvalConfig eval;
  DistConfig dist;
  AdaptConfig adapt;
  ModeConfig mode;
  ClusterConfig cluster;

  template <class V>
  void visit_sections(V& v) {
    v("model", model);
    v("data", data);
    v("tokenizer", tokenizer);
    v("optim", optim);
    v("train", train);
    v("eval", eval);
    v("dist", dist);
    v("adapt", adapt);
    v("mode", mode);
    v("cluster", cluster);
  }

  // Cross-field rules; throws Error naming the fields and values. `source` prefixes messages.
  void validate(const std::string& source) const;

  // Training domains, then the novel ones: every domain with text to encode and evaluate.
  std::vector<std::string> all_domains() const {
    auto all = data.domains;
    all.insert(all.end(), data.eval_domains.begin(), data.eval_domains.end());
    return all;
  }
  int64_t n_experts() const {
    return model.ff == FeedForward::kDemix ? int64_t(data.domains.size()) : 0;
  }
  bool is_mode() const { return mode.blocks > 0; }
  int64_t d_ff() const { return model.d_ff > 0 ? model.d_ff : 4 * model.d_model; }
};

// Loads `path` (may be empty: defaults only), applies `overrides` ("section.key=value", the value
// parsed as YAML), and validates. Unknown keys, wrong types and broken rules throw Error.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// `base` with overrides layered on top, validated again.
Config with_overrides(const Config& base, const std::vector<std::string>& overrides);

// Every key of every section as Markdown tables (key, type, default, meaning), from the same
// field lists that loading walks: docs/config.md is this text, checked by a test.
std::string config_reference();

// The resolved config as YAML, every field present; load_config of it gives the same Config.
std::string to_yaml(Config config);

}  // namespace demix
