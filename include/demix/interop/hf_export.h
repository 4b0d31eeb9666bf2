#pragma once

// Export to Hugging Face GPT-2 (`GPT2LMHeadModel`): the path of one expert through a DEMix model
// (the shared parameters plus expert X in every DEMix layer), or a prior-weighted parameter
// average of the experts, is an ordinary GPT-2. The directory holds config.json,
// model.safetensors (Conv1D weights are stored (in, out), so every Linear weight is transposed),
// the sentencepiece model as tokenizer.model and a tokenizer_config.json that transformers loads
// as a LlamaTokenizer, which encodes exactly as sentencepiece does.

#include <string>

namespace demix::interop {

struct HfExportOptions {
  std::string domain;       // the expert to export; empty for a dense model
  std::string merge_prior;  // or: average every expert weighted by this prior file
};

// Writes `out` through `out`.tmp and a rename; refuses an existing `out` and a +DOMAIN-TOKEN
// model (GPT-2 has no slot for its learned domain token).
void export_hf(const std::string& checkpoint, const HfExportOptions& options,
               const std::string& out);

}  // namespace demix::interop
