// `demix export hf`: a checkpoint's expert path (or a prior-weighted average of its experts) as a
// Hugging Face GPT-2 directory.

#include <cstdio>

#include "demix/interop/hf_export.h"
#include "options.h"

namespace demix::cli {

void add_export_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, out;
    interop::HfExportOptions options;
  };
  auto args = std::make_shared<Args>();
  auto* command = app.add_subcommand("export", "export a model to another framework's format");
  command->require_subcommand(1);
  auto* hf = command->add_subcommand(
      "hf", "one expert path (or the prior-weighted expert average) as a Hugging Face GPT-2");
  hf->add_option("checkpoint", args->checkpoint, "checkpoint or run directory")->required();
  auto* domain = hf->add_option("--domain", args->options.domain,
                                "the expert to export (DEMix models; dense models need none)");
  hf->add_option("--merge", args->options.merge_prior,
                 "or: average every expert's parameters weighted by this prior file")
      ->excludes(domain);
  hf->add_option("--out", args->out, "the new export directory")->required();
  hf->callback([args] {
    interop::export_hf(args->checkpoint, args->options, args->out);
    std::printf("wrote %s (load it with transformers.GPT2LMHeadModel.from_pretrained)\n",
                args->out.c_str());
  });
}

}  // namespace demix::cli
