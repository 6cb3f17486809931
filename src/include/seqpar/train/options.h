// seqpar-train's options: one flat set of keys, read from an INI file (--config) and
// overridden by the command line (--key value). Every key is validated after parsing, here and
// nowhere else (options.cpp); any problem throws OptionsError whose message names the key (and
// the file for config keys).
//
// The keys are flat (no INI sections) so that a line `steps = 300` in a config and `--steps 300`
// on the command line are the same thing; configs group them with comments instead.
#pragma once

#include <seqpar/models/model_kind.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace seqpar::train {

class OptionsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TrainOptions {
  // run
  std::string config;
  std::string mode = "train";  // train | generate
  models::ModelKind model = models::ModelKind::kManifold;
  int64_t steps = 100;
  int64_t stop_after = 0;      // stop after this step without changing the schedule (0: off)
  int64_t log_every = 1;
  int64_t val_every = 0;       // 0: validate at the end only
  std::string metrics;         // JSON-lines path ("" : none)
  int threads = 0;             // intra-op threads per rank (0: LibTorch default)
  bool progress_bar = true;    // only ever drawn when stdout is a terminal
  bool keep_freed_memory = true;  // keep_freed_host_memory() (trainer.h)
  // model
  int64_t d_model = 64;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t mlp_hidden = 0;      // 0: 4 * d_model
  int64_t conv_size = 0;       // model = gla, gated_deltanet: short convolution width (0: none)
  bool qk_l2norm = false;      // model = gla, gated_deltanet: L2-normalise q and k per head
  int64_t matrix_recompute_tokens = 0;  // gla, gated_deltanet, sp = 1: recomputed slices (0: off)
  int64_t psm_chunk = 16;      // model = psm: tokens per chunk
  bool psm_recompute = true;   // model = psm: recompute Agg and Inf in backward (memory)
  bool rotation = false;
  // model = manifold: velocity and position in one 2x2 block scan (the same model); not with
  // rotation or pack_documents. Not in the fingerprint: the same parameters give the same
  // outputs to rounding, so a checkpoint resumes with either (like sp_algo).
  bool second_order = false;
  double dt_min = 0.01;
  double dt_max = 1.0;
  double energy_lambda = 0.0;
  // data
  std::string task = "text";   // text | copy | mqar | s5
  std::vector<std::string> data{"/usr/share/common-licenses"};
  double val_fraction = 0.1;
  int64_t val_tokens = 0;      // text: tokens in the validation sequence (0: min(seq_len, split))
  // text: every file a document, the layers' state restarting at each document start
  // (cu_seqlens, docs/packed_sequences.md); not for the psm model
  bool pack_documents = false;
  int64_t val_sequences = 2;   // copy / mqar / s5: validation sequences
  int64_t val_length = 0;      // s5: tokens per validation sequence (0: seq_len)
  int64_t perm_elements = 5;   // s5: permutations of this many elements (3, 4 or 5)
  int64_t seq_len = 4096;
  int64_t batch = 1;           // sequences per data-parallel rank per step
  int64_t copy_tokens = 16;
  int64_t mqar_pairs = 16;
  int64_t mqar_min_distance = 2;
  int64_t mqar_max_distance = 100000;
  // optimisation
  double lr = 3e-3;
  double min_lr_ratio = 0.1;
  int64_t warmup = 10;
  double weight_decay = 0.01;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double grad_clip = 1.0;
  int64_t seed = 1234;
  // parallelism
  int64_t sp = 0;              // sequence-parallel group size (0: all ranks)
  std::string backend = "auto";
  // How the sp ranks exchange their summaries: auto, tree, exscan, allgather, ring, blelloch
  // (seqpar/comm/exchange_algo.h; SEQPAR_SP_ALGO replaces auto). Not in the fingerprint: the
  // algorithms differ by rounding only. The psm model's scan is always the Blelloch schedule.
  std::string sp_algo = "auto";
  // cpu, cuda (the GPU of this rank's local rank) or cuda:N. Data and gradients pass through
  // the host for communication, which every communicator backend accepts.
  std::string device = "cpu";
  // checkpoints
  std::string checkpoint_dir;  // "" : no checkpoints
  // Save a training checkpoint every N steps (0: at the end only). The old key,
  // checkpoint_every, is still read (with a deprecation message on stderr): it collided with
  // ScanOptions::checkpoint_every, the scan's recompute chunk.
  int64_t save_every = 0;
  int64_t keep_checkpoints = 3;
  std::string resume;          // a checkpoint file, or "latest" (newest in checkpoint_dir)
  bool overwrite = false;      // allow a fresh run to replace checkpoints already in the dir
  // generate
  std::string prompt = "The ";
  int64_t generate_tokens = 200;
  double temperature = 0.0;    // 0: greedy

  int64_t effective_mlp_hidden() const { return mlp_hidden > 0 ? mlp_hidden : 4 * d_model; }
};

// Parses argv (argv[0] is the program). Returns false when --help was printed to `help_out`.
bool parse_options(int argc, const char* const* argv, TrainOptions& options,
                   std::string* help_out = nullptr);

// Checks ranges and choices; throws OptionsError naming the key.
void validate(const TrainOptions& options);
// The checks that need the sequence-parallel group's size (sp = 0 means all ranks, known only
// once the world is up); the trainer calls it. Throws OptionsError naming the key.
void validate_for_sp_size(const TrainOptions& options, int sp_size);

// "key=value" lines of every option that changes the trained model or the sequence of
// updates. Checkpoints store it; resuming with a different fingerprint is an error that
// lists the differing keys.
std::string fingerprint(const TrainOptions& options);

}  // namespace seqpar::train
