// Streaming generation with a trained ByteLM: the prompt and every produced byte go through
// ByteLM::step, so memory is one (velocity, position) pair per layer whatever the length.
#pragma once

#include <seqpar/models/byte_lm.h>

#include <cstdint>
#include <string>

namespace seqpar::train {

// Feeds `prompt` (at least one byte) and produces `count` bytes. temperature 0: greedy;
// otherwise samples from softmax(logits / temperature) with LibTorch's default generator.
std::string generate(models::ByteLM& model, const std::string& prompt, int64_t count,
                     double temperature);

}  // namespace seqpar::train
