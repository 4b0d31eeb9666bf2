// `demix tokenizer`: train the sentencepiece model; `demix data`: encode the corpus with it.

#include <filesystem>

#include "demix/data/corpus.h"
#include "demix/data/tokenizer.h"
#include "options.h"

namespace demix::cli {

void add_data_commands(CLI::App& app) {
  auto tokenizer_options = std::make_shared<ConfigOptions>();
  auto force = std::make_shared<bool>(false);
  auto* tokenizer = app.add_subcommand(
      "tokenizer",
      "train the sentencepiece tokenizer on a balanced sample of the training domains");
  tokenizer_options->add_to(*tokenizer, "tokenizer.sample_bytes_per_domain=200000");
  tokenizer->add_flag("--force", *force, "retrain even if the model file exists");
  tokenizer->callback([tokenizer_options, force] {
    const auto config = tokenizer_options->load();
    if (std::filesystem::exists(config.tokenizer.model) && !*force) {
      spdlog::info("{}: exists (use --force to retrain)", config.tokenizer.model);
      return;
    }
    data::train_tokenizer(config);
    spdlog::info("{}: trained ({} pieces)", config.tokenizer.model, config.model.vocab_size);
  });

  auto data_options = std::make_shared<ConfigOptions>();
  auto* encode = app.add_subcommand(
      "data",
      "encode every domain and split of data.sources into sharded token files (training the "
      "tokenizer if needed)");
  data_options->add_to(*encode, "data.tokens_dir=data/tokens/mine");
  encode->callback([data_options] {
    const auto config = data_options->load();
    if (!std::filesystem::exists(config.tokenizer.model)) data::train_tokenizer(config);
    const int written = data::encode_corpus(config);
    if (written == 0)
      spdlog::info("{}: up to date", config.data.tokens_dir);
    else
      spdlog::info("{}: {} splits written; {}/REPORT.md says what was read, dropped and kept",
                   config.data.tokens_dir, written, config.data.tokens_dir);
  });
}

}  // namespace demix::cli
