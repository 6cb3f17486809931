// Online binary-counter scan (seqpar/psm.h). A push adds one chunk like binary addition: while
// the smallest stored block has the new block's size, the two merge (older on the left), then
// the new block's fold is Agg(fold of the next larger block, new root). The prefix is the
// smallest block's fold: the left fold of the blocks tiling [0, n), largest first, which is the
// static scan's parenthesization.
#include <c10/util/Exception.h>
#include <seqpar/psm.h>

namespace seqpar::psm {

BinaryCounter::BinaryCounter(Aggregate agg) : agg_(std::move(agg)) {
  TORCH_CHECK(agg_.fn, "seqpar::psm::BinaryCounter: agg has no function");
}

void BinaryCounter::push(const at::Tensor& m) {
  TORCH_CHECK(m.defined() && m.dim() >= 1, "seqpar::psm::BinaryCounter::push: m must be a chunk "
              "state (batch, ...)");
  if (!entries_.empty()) {
    TORCH_CHECK(m.sizes() == entries_.back().root.sizes(),
                "seqpar::psm::BinaryCounter::push: m has shape ", m.sizes(),
                ", earlier chunk states ", entries_.back().root.sizes());
  }
  at::Tensor cur = m;
  int level = 0;
  while (!entries_.empty() && entries_.back().level == level) {
    cur = agg_(entries_.back().root, cur);
    ++agg_calls_;
    entries_.pop_back();
    ++level;
  }
  at::Tensor fold = cur;
  if (!entries_.empty()) {
    fold = agg_(entries_.back().fold, cur);
    ++agg_calls_;
  }
  entries_.push_back({level, cur, fold});
  ++chunks_;
}

std::optional<at::Tensor> BinaryCounter::prefix() const {
  if (entries_.empty()) return std::nullopt;
  return entries_.back().fold;
}

int64_t BinaryCounter::stored_bytes() const {
  int64_t bytes = 0;
  for (const Entry& e : entries_) {
    bytes += static_cast<int64_t>(e.root.nbytes());
    if (!e.fold.is_same(e.root)) bytes += static_cast<int64_t>(e.fold.nbytes());
  }
  return bytes;
}

}  // namespace seqpar::psm
