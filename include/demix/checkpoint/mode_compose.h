#pragma once

// Setting up Modular Domain Experts (model/mode_block.h) from checkpoints: the frozen backbone,
// the stage-1 expert initialisation, and the stage-2 composition with gate widening.

#include <string>

#include "demix/model/gpt.h"

namespace demix {
struct Config;
}

namespace demix::checkpoint {

// Stage 1, mode.expert_init=backbone: every hosted expert stack of block b starts as a copy of
// the block's last layers_per_expert backbone layers. With as many layers as the block, every
// branch starts as the backbone's, so the model starts as the backbone whatever its gates say.
void init_experts_from_backbone(model::GptImpl& model);

// Stage 2: fills `model` (one expert per config.data.domains entry) from the stage-1 runs
// <mode.experts_from>/<domain>: the backbone (which must be the same in every run), expert j's
// stacks from domain j's run, and the gates widened from 2 to N + 1 outputs. Softmax only sees
// logit differences, so row 0 (backbone) becomes zero and row j + 1 becomes expert j's
// single-expert (expert row - backbone row): with the other experts masked, the composed model
// is each single-expert model again.
void compose_experts(const Config& config, model::GptImpl& model);

}  // namespace demix::checkpoint
