#pragma once

// Domain-adaptive training of an existing model on a new domain (DEMix paper, sec. 6.1).
//
// DEMix-DAPT: estimate the cached prior of the new domain's held-out (valid) text over the
// existing experts, start a new expert from the closest one (adapt.init: closest) or from their
// prior-weighted average (merge), then train only that expert on the new domain: embeddings,
// attention, every LayerNorm and every old expert stay frozen, so nothing the model knew is
// forgotten.
// Dense-DAPT: continue training a DENSE model on the new domain (train.trainable: all, or ff).
//
// The run goes to train.out_dir as an ordinary training run; its starting point (the base
// checkpoint with the new expert added) is <out_dir>/init, and the prior is <out_dir>/prior.json.

#include <string>

#include "demix/core/config.h"

namespace demix::recipes {

// The training config of the adaptation run that `config` (with its adapt section) describes;
// prepares <out_dir>/init and <out_dir>/prior.json for DEMix-DAPT on the way.
Config prepare_adaptation(const Config& config);

}  // namespace demix::recipes
