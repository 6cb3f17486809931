// See slice_header.h.
#include "sp/slice_header.h"

#include <sstream>
#include <string>
#include <vector>

#include "seqpar/comm/tensor_buffer.h"

namespace seqpar::sp {
namespace {

// Every rank describes its inputs in a fixed-size header; all ranks gather all headers and
// throw the same error when any two disagree, before any summary is exchanged.
constexpr int64_t kHeaderMagic = 0x5350534341ll;  // "SPSCA"
constexpr int kMaxChannelDims = 8;
constexpr int kHeaderSize = 8 + kMaxChannelDims;

std::vector<int64_t> make_header(const at::Tensor& a, bool reverse, comm::ExchangeAlgo algo) {
  std::vector<int64_t> h(kHeaderSize, -1);
  h[0] = kHeaderMagic;
  h[1] = static_cast<int64_t>(a.scalar_type());
  h[2] = a.is_cpu() ? 0 : 1;
  h[3] = a.dim();
  h[4] = a.size(0);
  h[5] = reverse ? 1 : 0;
  h[6] = static_cast<int64_t>(algo);
  h[7] = a.size(1);  // time: may differ across ranks
  for (int64_t d = 2; d < a.dim() && d - 2 < kMaxChannelDims; ++d) h[8 + d - 2] = a.size(d);
  return h;
}

std::string describe_header(const int64_t* h) {
  std::ostringstream os;
  os << "dtype " << c10::toString(static_cast<at::ScalarType>(h[1])) << ", "
     << (h[2] == 0 ? "cpu" : "cuda") << ", batch " << h[4] << ", channels [";
  for (int d = 0; d < h[3] - 2; ++d) os << (d ? ", " : "") << h[8 + d];
  os << "], reverse " << (h[5] ? "true" : "false") << ", algo "
     << comm::exchange_algo_name(static_cast<comm::ExchangeAlgo>(h[6]));
  return os.str();
}

}  // namespace

void check_headers_agree(const char* op, comm::Communicator& group, const at::Tensor& a,
                         bool reverse, comm::ExchangeAlgo algo) {
  TORCH_CHECK(a.dim() - 2 <= kMaxChannelDims, op, ": at most ", kMaxChannelDims,
              " channel dims are supported, got ", a.dim() - 2);
  std::vector<int64_t> mine = make_header(a, reverse, algo);
  std::vector<int64_t> all(static_cast<std::size_t>(kHeaderSize) * group.size());
  group.all_gather(comm::host_buffer(mine.data(), mine.size() * sizeof(int64_t),
                                     comm::DataType::kInt64),
                   comm::host_buffer(all.data(), all.size() * sizeof(int64_t),
                                     comm::DataType::kInt64));
  const int64_t* first = all.data();
  for (int r = 0; r < group.size(); ++r) {
    const int64_t* h = all.data() + static_cast<std::size_t>(r) * kHeaderSize;
    bool same = h[0] == kHeaderMagic;
    for (int i = 1; i < kHeaderSize && same; ++i) same = (i == 7) || h[i] == first[i];
    TORCH_CHECK(same, op, ": the ranks of the group disagree on their inputs: rank ",
                r, " has ", h[0] == kHeaderMagic ? describe_header(h) : "a foreign message",
                " but rank 0 has ", describe_header(first),
                ". Every rank must pass the same batch, channel shape, dtype, device kind, "
                "reverse flag and algorithm (only the time length may differ).");
  }
}

}  // namespace seqpar::sp
