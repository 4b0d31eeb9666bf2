#pragma once

// The corpus on disk: text at <corpus>/<domain>/<split>.txt (documents separated by a form-feed
// line), tokens at <tokens_dir>/<domain>/<split>.bin. `encode_corpus` turns the first into the
// second; `open_split` maps an encoded split and checks it belongs to the configured tokenizer.

#include <memory>
#include <string>
#include <vector>

#include "demix/data/token_file.h"

namespace demix {
struct Config;
}

namespace demix::data {

inline const std::vector<std::string> kSplits = {"train", "valid", "test"};

std::string text_path(const Config& config, const std::string& domain, const std::string& split);
std::string token_path(const Config& config, const std::string& domain, const std::string& split);

// Encodes every split of every training and eval domain with the configured tokenizer, one EOS
// token after each document. Files already encoded by the same tokenizer from the same text size
// are kept. Returns the number of files written.
int encode_corpus(const Config& config);

// Opens an encoded split; throws Error if it is missing or was made by another tokenizer.
std::unique_ptr<TokenFile> open_split(const Config& config, const std::string& domain,
                                      const std::string& split);

}  // namespace demix::data
