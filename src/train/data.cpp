// Byte corpus and synthetic tasks (seqpar/train/data.h).
//
// Randomness is counter based: sequence i of a task draws from a generator seeded with
// mix(seed, stream, i), so any rank can produce any slice of any sequence without state.
// Draws use raw 64-bit outputs of std::mt19937_64 (whose sequence the standard fixes), never
// std::*_distribution (whose results differ between standard libraries).
#include "seqpar/train/data.h"

#include "seqpar/train/options.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <stdexcept>

namespace fs = std::filesystem;

namespace seqpar::train {

std::pair<int64_t, int64_t> slice_range(int64_t length, int rank, int size) {
  const int64_t base = length / size, extra = length % size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

std::pair<int64_t, int64_t> aligned_slice_range(int64_t length, int rank, int size,
                                                int64_t chunk) {
  const int64_t chunks = (length + chunk - 1) / chunk;
  const int64_t per_rank = (chunks + size - 1) / size;
  int64_t block = 1;
  while (block < per_rank) block *= 2;
  const int64_t begin = std::min(length, rank * block * chunk);
  return {begin, std::min(length, begin + block * chunk)};
}

Slice Task::train_slice(int64_t first_index, int64_t batch, int64_t begin, int64_t end) const {
  const int64_t len = end - begin;
  Slice s{torch::empty({batch, len}, torch::kInt64), torch::empty({batch, len}, torch::kInt64),
          torch::empty({batch, len}, torch::kFloat32), {}};
  for (int64_t b = 0; b < batch; ++b) {
    train_tokens(first_index + b, begin, end, s.inputs[b].data_ptr<int64_t>(),
                 s.targets[b].data_ptr<int64_t>(), s.weights[b].data_ptr<float>());
    const auto documents = train_documents(first_index + b);
    if (!documents.empty()) s.documents.push_back(torch::tensor(documents, torch::kInt64));
  }
  return s;
}

Slice Task::val_slice(int64_t index, int64_t begin, int64_t end) const {
  const int64_t len = end - begin;
  Slice s{torch::empty({1, len}, torch::kInt64), torch::empty({1, len}, torch::kInt64),
          torch::empty({1, len}, torch::kFloat32), {}};
  val_tokens(index, begin, end, s.inputs.data_ptr<int64_t>(), s.targets.data_ptr<int64_t>(),
             s.weights.data_ptr<float>());
  const auto documents = val_documents(index);
  if (!documents.empty()) s.documents.push_back(torch::tensor(documents, torch::kInt64));
  return s;
}

namespace {

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::mt19937_64 sequence_rng(int64_t seed, uint64_t stream, int64_t index) {
  return std::mt19937_64(mix(mix(static_cast<uint64_t>(seed) ^ (stream << 56)) +
                             static_cast<uint64_t>(index)));
}

uint64_t below(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

// ---------------------------------------------------------------------------------------------
// A byte corpus: the concatenation of files, read by offset with seeks (never loaded whole).
class ByteCorpus {
 public:
  explicit ByteCorpus(const std::vector<std::string>& paths) {
    for (const auto& path : expand_corpus_paths(paths)) {
      std::error_code ec;
      const auto size = fs::file_size(path, ec);
      if (ec) throw std::runtime_error("data: cannot stat '" + path + "': " + ec.message());
      if (size == 0) continue;
      files_.push_back({path, total_, static_cast<int64_t>(size)});
      total_ += static_cast<int64_t>(size);
    }
    if (total_ == 0) throw std::runtime_error("data: the corpus is empty");
    streams_.resize(files_.size());
  }
  int64_t size() const { return total_; }
  // Bytes [offset, offset + n) of the concatenation.
  void read(int64_t offset, int64_t n, unsigned char* out) const {
    auto it = std::upper_bound(files_.begin(), files_.end(), offset,
                               [](int64_t off, const File& f) { return off < f.start; });
    size_t i = static_cast<size_t>(it - files_.begin()) - 1;
    while (n > 0) {
      const File& f = files_.at(i);
      const int64_t within = offset - f.start, take = std::min(n, f.size - within);
      auto& stream = streams_[i];
      if (!stream) stream = std::make_unique<std::ifstream>(f.path, std::ios::binary);
      stream->clear();
      stream->seekg(within);
      stream->read(reinterpret_cast<char*>(out), take);
      if (stream->gcount() != take)
        throw std::runtime_error("data: short read from '" + f.path + "'");
      out += take, offset += take, n -= take, ++i;
    }
  }
  size_t file_count() const { return files_.size(); }
  // The offsets where the files start in the concatenation: 0 first, increasing.
  std::vector<int64_t> starts() const {
    std::vector<int64_t> out;
    for (const File& f : files_) out.push_back(f.start);
    return out;
  }

 private:
  struct File {
    std::string path;
    int64_t start, size;
  };
  std::vector<File> files_;
  int64_t total_ = 0;
  mutable std::vector<std::unique_ptr<std::ifstream>> streams_;
};

// Text: the corpus split into a training prefix and a held-out suffix. Training sequence i
// starts at a random offset of the training part and wraps around it; validation is the
// first val_length + 1 bytes of the held-out part, one sequence.
//
// With pack_documents every file is a document: a sequence is the same window of the
// concatenated documents (its first document usually entered part way, its last cut), and its
// documents are where a file starts inside it, or the training part wraps round to its first
// file. The tokens and weights do not change, so losses with and without packing compare: the
// last byte of a document still predicts the next document's first byte.
class TextTask : public Task {
 public:
  explicit TextTask(const TrainOptions& o)
      : corpus_(o.data), seed_(o.seed), seq_len_(o.seq_len), pack_(o.pack_documents) {
    train_bytes_ = static_cast<int64_t>(corpus_.size() * (1 - o.val_fraction));
    const int64_t held_out = corpus_.size() - train_bytes_;
    if (train_bytes_ < 2 || held_out < 2)
      throw std::runtime_error("data: corpus of " + std::to_string(corpus_.size()) +
                               " bytes is too small to split (val_fraction)");
    val_length_ = o.val_tokens > 0 ? std::min(o.val_tokens, held_out - 1)
                                   : std::min(o.seq_len, held_out - 1);
    description_ = "text: " + std::to_string(corpus_.size()) + " bytes in " +
                   std::to_string(corpus_.file_count()) + " files, " +
                   std::to_string(train_bytes_) + " train / " + std::to_string(held_out) +
                   " held out" + (pack_ ? ", each file a packed document" : "");
  }
  std::string describe() const override { return description_; }
  int64_t train_length() const override { return seq_len_; }
  double train_weight() const override { return static_cast<double>(seq_len_); }
  int64_t val_count() const override { return 1; }
  int64_t val_length() const override { return val_length_; }
  double val_weight() const override { return static_cast<double>(val_length_); }

  std::vector<int64_t> train_documents(int64_t index) const override {
    if (!pack_) return {};
    // Token t reads byte (start + t) mod train_bytes_; a file start there opens a document.
    const int64_t start = train_start(index);
    std::vector<int64_t> cu{0};
    for (int64_t lap = 0; lap * train_bytes_ < start + seq_len_; ++lap) {
      for (int64_t f : corpus_.starts()) {
        const int64_t t = lap * train_bytes_ + f - start;
        if (f < train_bytes_ && t > 0 && t < seq_len_) cu.push_back(t);
      }
    }
    std::sort(cu.begin(), cu.end());
    cu.push_back(seq_len_);
    return cu;
  }
  std::vector<int64_t> val_documents(int64_t) const override {
    if (!pack_) return {};
    std::vector<int64_t> cu{0};
    for (int64_t f : corpus_.starts()) {
      const int64_t t = f - train_bytes_;
      if (t > 0 && t < val_length_) cu.push_back(t);
    }
    cu.push_back(val_length_);
    return cu;
  }

  void train_tokens(int64_t index, int64_t begin, int64_t end, int64_t* inputs, int64_t* targets,
                    float* weights) const override {
    const int64_t start = train_start(index);
    std::vector<unsigned char> bytes(end - begin + 1);
    int64_t pos = (start + begin) % train_bytes_, done = 0;
    while (done < static_cast<int64_t>(bytes.size())) {
      const int64_t take = std::min<int64_t>(bytes.size() - done, train_bytes_ - pos);
      corpus_.read(pos, take, bytes.data() + done);
      done += take, pos = 0;
    }
    fill(bytes, inputs, targets, weights);
  }
  void val_tokens(int64_t, int64_t begin, int64_t end, int64_t* inputs, int64_t* targets,
                  float* weights) const override {
    std::vector<unsigned char> bytes(end - begin + 1);
    corpus_.read(train_bytes_ + begin, bytes.size(), bytes.data());
    fill(bytes, inputs, targets, weights);
  }

 private:
  // Where training sequence `index` starts in the training part.
  int64_t train_start(int64_t index) const {
    auto rng = sequence_rng(seed_, 1, index);
    return static_cast<int64_t>(below(rng, train_bytes_));
  }
  static void fill(const std::vector<unsigned char>& bytes, int64_t* inputs, int64_t* targets,
                   float* weights) {
    for (size_t t = 0; t + 1 < bytes.size(); ++t) {
      inputs[t] = bytes[t], targets[t] = bytes[t + 1], weights[t] = 1.0f;
    }
  }
  ByteCorpus corpus_;
  int64_t seed_, seq_len_, train_bytes_ = 0, val_length_ = 0;
  bool pack_;
  std::string description_;
};

// A synthetic sequence: filler bytes with a few events (position, byte); the loss counts at
// `scored` positions (predicting the byte after them).
struct EventSequence {
  std::vector<std::pair<int64_t, int64_t>> events;  // sorted by position
  std::vector<int64_t> scored;                      // sorted
  int64_t filler = '.';

  int64_t at(int64_t t) const {
    auto it = std::lower_bound(events.begin(), events.end(), std::make_pair(t, int64_t{-1}));
    return it != events.end() && it->first == t ? it->second : filler;
  }
  void fill(int64_t begin, int64_t end, int64_t* inputs, int64_t* targets, float* weights) const {
    for (int64_t t = begin; t < end; ++t) {
      inputs[t - begin] = at(t), targets[t - begin] = at(t + 1);
      weights[t - begin] = std::binary_search(scored.begin(), scored.end(), t) ? 1.0f : 0.0f;
    }
  }
};

class EventTask : public Task {
 public:
  EventTask(const TrainOptions& o) : seed_(o.seed), seq_len_(o.seq_len), val_count_(o.val_sequences) {}
  int64_t train_length() const override { return seq_len_; }
  int64_t val_count() const override { return val_count_; }
  int64_t val_length() const override { return seq_len_; }
  double val_weight() const override { return train_weight(); }
  void train_tokens(int64_t index, int64_t begin, int64_t end, int64_t* inputs, int64_t* targets,
                    float* weights) const override {
    auto rng = sequence_rng(seed_, 2, index);
    make(rng).fill(begin, end, inputs, targets, weights);
  }
  void val_tokens(int64_t index, int64_t begin, int64_t end, int64_t* inputs, int64_t* targets,
                  float* weights) const override {
    auto rng = sequence_rng(seed_, 3, index);
    make(rng).fill(begin, end, inputs, targets, weights);
  }

 protected:
  virtual EventSequence make(std::mt19937_64& rng) const = 0;
  int64_t seed_, seq_len_, val_count_;
};

// Selective copying: K letters at random positions among filler in the first T - K - 1
// tokens, then a separator '|', then the K letters in order. Scored: predicting each copied
// letter (from the separator and the letters before it).
class CopyTask : public EventTask {
 public:
  CopyTask(const TrainOptions& o) : EventTask(o), k_(o.copy_tokens) {}
  std::string describe() const override {
    return "copy: " + std::to_string(k_) + " letters over " + std::to_string(seq_len_) +
           " tokens";
  }
  double train_weight() const override { return static_cast<double>(k_); }

 protected:
  EventSequence make(std::mt19937_64& rng) const override {
    const int64_t memory = seq_len_ - k_ - 1;
    std::set<int64_t> positions;
    while (static_cast<int64_t>(positions.size()) < k_) positions.insert(below(rng, memory));
    EventSequence s;
    std::vector<int64_t> letters;
    for (int64_t p : positions) {
      letters.push_back('a' + static_cast<int64_t>(below(rng, 26)));
      s.events.push_back({p, letters.back()});
    }
    s.events.push_back({memory, '|'});
    for (int64_t i = 0; i < k_; ++i) {
      s.events.push_back({memory + 1 + i, letters[i]});
      s.scored.push_back(memory + i);
    }
    return s;
  }
  int64_t k_;
};

// Multi-query associative recall: N distinct keys (bytes 128..191) each followed by a value
// (bytes 192..255) somewhere in the sequence; the same key appears again d tokens later,
// d in [min_distance, max_distance], and the model must predict its value there.
class RecallTask : public EventTask {
 public:
  RecallTask(const TrainOptions& o)
      : EventTask(o), pairs_(o.mqar_pairs), min_d_(o.mqar_min_distance),
        max_d_(std::min(o.mqar_max_distance, o.seq_len - 4)) {}
  std::string describe() const override {
    return "mqar: " + std::to_string(pairs_) + " pairs, distances " + std::to_string(min_d_) +
           ".." + std::to_string(max_d_) + " over " + std::to_string(seq_len_) + " tokens";
  }
  double train_weight() const override { return static_cast<double>(pairs_); }

 protected:
  EventSequence make(std::mt19937_64& rng) const override {
    std::vector<int64_t> keys(64);
    for (int64_t i = 0; i < 64; ++i) keys[i] = 128 + i;
    for (int64_t i = 63; i > 0; --i) std::swap(keys[i], keys[below(rng, i + 1)]);
    std::set<int64_t> used;
    EventSequence s;
    auto free_at = [&](int64_t p) { return !used.count(p) && !used.count(p + 1); };
    for (int64_t i = 0; i < pairs_; ++i) {
      const int64_t value = 192 + static_cast<int64_t>(below(rng, 64));
      for (int64_t tries = 0;; ++tries) {
        if (tries > 100000)
          throw std::runtime_error("mqar: cannot place " + std::to_string(pairs_) +
                                   " pairs; lengthen seq_len or narrow the distance range");
        const int64_t d = min_d_ + static_cast<int64_t>(below(rng, max_d_ - min_d_ + 1));
        const int64_t p = static_cast<int64_t>(below(rng, seq_len_ - 1 - d));
        const int64_t q = p + d;
        if (d < 2 || !free_at(p) || !free_at(q) || q + 1 >= seq_len_) continue;
        used.insert({p, p + 1, q, q + 1});
        s.events.insert(s.events.end(), {{p, keys[i]}, {p + 1, value}, {q, keys[i]}, {q + 1, value}});
        s.scored.push_back(q);
        break;
      }
    }
    std::sort(s.events.begin(), s.events.end());
    std::sort(s.scored.begin(), s.scored.end());
    return s;
  }
  int64_t pairs_, min_d_, max_d_;
};

// S5 state tracking: every token is one of the k! permutations of k = perm_elements elements
// (5 by default; its index in lexicographic order) and the target at position t is the index
// of the composition g_t o ... o g_0 (the state after reading token t), scored everywhere.
// Validation sequences may be longer than training ones (val_length) to measure length
// generalization.
class S5Task : public Task {
 public:
  explicit S5Task(const TrainOptions& o)
      : seed_(o.seed), seq_len_(o.seq_len), val_len_(o.val_length > 0 ? o.val_length : o.seq_len),
        val_count_(o.val_sequences), k_(static_cast<int>(o.perm_elements)) {
    std::array<int, 5> p{0, 1, 2, 3, 4};
    index_.fill(-1);
    do {
      index_[code(p)] = static_cast<int>(perms_.size());
      perms_.push_back(p);
    } while (std::next_permutation(p.begin(), p.begin() + k_));
  }
  std::string describe() const override {
    return "s5: composing permutations of " + std::to_string(k_) + " elements (" +
           std::to_string(perms_.size()) + " tokens), train length " + std::to_string(seq_len_) +
           ", validation length " + std::to_string(val_len_);
  }
  int64_t train_length() const override { return seq_len_; }
  double train_weight() const override { return static_cast<double>(seq_len_); }
  int64_t val_count() const override { return val_count_; }
  int64_t val_length() const override { return val_len_; }
  double val_weight() const override { return static_cast<double>(val_len_); }
  void train_tokens(int64_t index, int64_t begin, int64_t end, int64_t* inputs, int64_t* targets,
                    float* weights) const override {
    fill(4, index, begin, end, inputs, targets, weights);
  }
  void val_tokens(int64_t index, int64_t begin, int64_t end, int64_t* inputs, int64_t* targets,
                  float* weights) const override {
    fill(5, index, begin, end, inputs, targets, weights);
  }

 private:
  int code(const std::array<int, 5>& p) const {
    int c = 0;
    for (int i = 0; i < k_; ++i) c = c * 5 + p[i];
    return c;
  }
  // The state before `begin` is recomputed from the start: cheap integer work.
  void fill(uint64_t stream, int64_t index, int64_t begin, int64_t end, int64_t* inputs,
            int64_t* targets, float* weights) const {
    auto rng = sequence_rng(seed_, stream, index);
    std::array<int, 5> state{0, 1, 2, 3, 4};
    for (int64_t t = 0; t < end; ++t) {
      const auto g = static_cast<int64_t>(below(rng, perms_.size()));
      std::array<int, 5> next = state;
      for (int i = 0; i < k_; ++i) next[i] = perms_[g][state[i]];  // g after state
      state = next;
      if (t >= begin) {
        inputs[t - begin] = g;
        targets[t - begin] = index_[code(state)];
        weights[t - begin] = 1.0f;
      }
    }
  }
  int64_t seed_, seq_len_, val_len_, val_count_;
  int k_;
  std::vector<std::array<int, 5>> perms_;
  std::array<int, 3125> index_;
};

}  // namespace

std::vector<std::string> expand_corpus_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const auto& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<std::string> inside;
      for (const auto& entry : fs::directory_iterator(path, ec)) {
        if (entry.is_regular_file() && !entry.is_symlink()) inside.push_back(entry.path().string());
      }
      if (ec) throw std::runtime_error("data: cannot list '" + path + "': " + ec.message());
      std::sort(inside.begin(), inside.end());
      files.insert(files.end(), inside.begin(), inside.end());
    } else if (fs::is_regular_file(path, ec)) {
      files.push_back(path);
    } else {
      throw std::runtime_error("data: '" + path + "' is neither a file nor a directory");
    }
  }
  if (files.empty()) throw std::runtime_error("data: no files found in the data paths");
  return files;
}

std::unique_ptr<Task> make_task(const TrainOptions& options) {
  if (options.task == "text") return std::make_unique<TextTask>(options);
  if (options.task == "copy") return std::make_unique<CopyTask>(options);
  if (options.task == "mqar") return std::make_unique<RecallTask>(options);
  if (options.task == "s5") return std::make_unique<S5Task>(options);
  throw std::runtime_error("unknown task '" + options.task + "'");
}

}  // namespace seqpar::train
