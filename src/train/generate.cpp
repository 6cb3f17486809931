// Streaming generation (seqpar/train/generate.h).
#include "seqpar/train/generate.h"

#include <stdexcept>
#include <vector>

namespace seqpar::train {

std::string generate(models::ByteLM& model, const std::string& prompt, int64_t count,
                     double temperature) {
  if (prompt.empty()) throw std::invalid_argument("generate: the prompt must not be empty");
  torch::NoGradGuard no_grad;
  std::vector<models::LayerState> states;
  at::Tensor logits;
  for (unsigned char byte : prompt) {
    logits = model->step(torch::full({1}, static_cast<int64_t>(byte), torch::kInt64), states);
  }
  std::string out;
  for (int64_t i = 0; i < count; ++i) {
    at::Tensor next = temperature > 0
                          ? torch::multinomial(torch::softmax(logits / temperature, -1), 1)
                                .reshape({1})
                          : logits.argmax(-1);
    const int64_t byte = next.item<int64_t>();
    out.push_back(static_cast<char>(byte));
    logits = model->step(torch::full({1}, byte, torch::kInt64), states);
  }
  return out;
}

}  // namespace seqpar::train
