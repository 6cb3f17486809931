// Option parsing and validation for seqpar-train (seqpar/train/options.h).
//
// Boost.Program_options keeps the first value stored for a key, so the command line is
// stored before the config file: command-line values override the file's.
#include "seqpar/train/options.h"

#include <boost/program_options.hpp>
#include <seqpar/comm/exchange_algo.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace po = boost::program_options;

namespace seqpar::train {
namespace {

std::vector<std::string> split_paths(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, ',')) {
    auto begin = part.find_first_not_of(" \t"), end = part.find_last_not_of(" \t");
    if (begin != std::string::npos) parts.push_back(part.substr(begin, end - begin + 1));
  }
  return parts;
}

std::string join_paths(const std::vector<std::string>& parts) {
  std::string text;
  for (const auto& p : parts) text += (text.empty() ? "" : ",") + p;
  return text;
}

// Keys read as text and converted after parsing (so that their errors name the key like
// every other validation error), and the deprecated checkpoint_every.
struct TextKeys {
  std::string data;
  std::string model;
  int64_t checkpoint_every = 0;
};

void describe(po::options_description& desc, TrainOptions& o, TextKeys& text) {
  // clang-format off
  desc.add_options()
    ("help,h", "print this help")
    ("config", po::value(&o.config), "INI file of key = value lines (command line overrides it)")
    ("mode", po::value(&o.mode)->default_value(o.mode), "train | generate")
    ("model", po::value(&text.model)->default_value(models::model_kind_name(o.model)), "model family: manifold | linoss | gla | gated_deltanet | psm")
    ("steps", po::value(&o.steps)->default_value(o.steps), "optimizer steps (the LR schedule's length)")
    ("stop_after", po::value(&o.stop_after)->default_value(o.stop_after), "stop after this step, schedule unchanged (0: run all steps)")
    ("log_every", po::value(&o.log_every)->default_value(o.log_every), "progress line every N steps")
    ("val_every", po::value(&o.val_every)->default_value(o.val_every), "validate every N steps (0: at the end only)")
    ("metrics", po::value(&o.metrics)->default_value(o.metrics), "write JSON lines of metrics to this path")
    ("threads", po::value(&o.threads)->default_value(o.threads), "intra-op threads per rank (0: LibTorch default)")
    ("progress_bar", po::value(&o.progress_bar)->default_value(o.progress_bar), "draw a progress bar when stdout is a terminal")
    ("keep_freed_memory", po::value(&o.keep_freed_memory)->default_value(o.keep_freed_memory), "reuse freed host memory instead of returning it to the OS (faster, more resident memory)")
    ("d_model", po::value(&o.d_model)->default_value(o.d_model), "model width")
    ("layers", po::value(&o.layers)->default_value(o.layers), "ManifoldScan blocks")
    ("heads", po::value(&o.heads)->default_value(o.heads), "time-scale heads per block (divides d_model)")
    ("mlp_hidden", po::value(&o.mlp_hidden)->default_value(o.mlp_hidden), "MLP hidden width (0: 4 * d_model)")
    ("conv_size", po::value(&o.conv_size)->default_value(o.conv_size), "gla, gated_deltanet: tokens seen by the short causal convolution on q, k, v (0: none)")
    ("qk_l2norm", po::value(&o.qk_l2norm)->default_value(o.qk_l2norm), "gla, gated_deltanet: L2-normalise q and k per head (gated_deltanet always normalises k)")
    ("matrix_recompute_tokens", po::value(&o.matrix_recompute_tokens)->default_value(o.matrix_recompute_tokens), "gla, gated_deltanet with one sp rank: run the recurrence over slices of this many tokens, recomputed in backward (less memory, about one more forward of it; 0: off)")
    ("psm_chunk", po::value(&o.psm_chunk)->default_value(o.psm_chunk), "psm: tokens per chunk")
    ("psm_recompute", po::value(&o.psm_recompute)->default_value(o.psm_recompute), "psm: recompute Agg and Inf in backward instead of keeping their activations (less memory, about one more forward)")
    ("rotation", po::value(&o.rotation)->default_value(o.rotation), "complex retention a = decay * exp(i phase)")
    ("second_order", po::value(&o.second_order)->default_value(o.second_order), "manifold: velocity and position in one 2x2 block scan (seqpar::block_scan) instead of two scans; the same model (not with rotation or pack_documents)")
    ("dt_min", po::value(&o.dt_min)->default_value(o.dt_min), "smallest base time scale")
    ("dt_max", po::value(&o.dt_max)->default_value(o.dt_max), "largest base time scale")
    ("energy_lambda", po::value(&o.energy_lambda)->default_value(o.energy_lambda), "weight of the energy-drift regularizer")
    ("task", po::value(&o.task)->default_value(o.task), "text | copy | mqar | s5")
    ("data", po::value(&text.data)->default_value(join_paths(o.data)), "comma-separated files or directories (task = text)")
    ("val_fraction", po::value(&o.val_fraction)->default_value(o.val_fraction), "share of the corpus held out for validation")
    ("val_tokens", po::value(&o.val_tokens)->default_value(o.val_tokens), "text: validation tokens (0: min(seq_len, held-out bytes - 1))")
    ("pack_documents", po::value(&o.pack_documents)->default_value(o.pack_documents), "text: each file a document, packed into the sequences with its boundaries; every layer's state restarts at a document start (not for psm)")
    ("val_sequences", po::value(&o.val_sequences)->default_value(o.val_sequences), "copy / mqar / s5: validation sequences")
    ("val_length", po::value(&o.val_length)->default_value(o.val_length), "s5: tokens per validation sequence (0: seq_len)")
    ("perm_elements", po::value(&o.perm_elements)->default_value(o.perm_elements), "s5: permutations of this many elements (3: S3, 4: S4, 5: S5)")
    ("seq_len", po::value(&o.seq_len)->default_value(o.seq_len), "tokens per sequence (split across the sp ranks)")
    ("batch", po::value(&o.batch)->default_value(o.batch), "sequences per data-parallel rank per step")
    ("copy_tokens", po::value(&o.copy_tokens)->default_value(o.copy_tokens), "copy: tokens to remember")
    ("mqar_pairs", po::value(&o.mqar_pairs)->default_value(o.mqar_pairs), "mqar: key-value pairs (and queries) per sequence")
    ("mqar_min_distance", po::value(&o.mqar_min_distance)->default_value(o.mqar_min_distance), "mqar: smallest key-to-query distance")
    ("mqar_max_distance", po::value(&o.mqar_max_distance)->default_value(o.mqar_max_distance), "mqar: largest key-to-query distance")
    ("lr", po::value(&o.lr)->default_value(o.lr), "peak learning rate")
    ("min_lr_ratio", po::value(&o.min_lr_ratio)->default_value(o.min_lr_ratio), "final LR as a fraction of lr (cosine floor)")
    ("warmup", po::value(&o.warmup)->default_value(o.warmup), "linear warmup steps")
    ("weight_decay", po::value(&o.weight_decay)->default_value(o.weight_decay), "AdamW weight decay (matrices only)")
    ("beta1", po::value(&o.beta1)->default_value(o.beta1), "AdamW beta1")
    ("beta2", po::value(&o.beta2)->default_value(o.beta2), "AdamW beta2")
    ("grad_clip", po::value(&o.grad_clip)->default_value(o.grad_clip), "global gradient-norm clip (0: off)")
    ("seed", po::value(&o.seed)->default_value(o.seed), "seed of the initialisation and the data order")
    ("sp", po::value(&o.sp)->default_value(o.sp), "sequence-parallel group size (0: all ranks)")
    ("backend", po::value(&o.backend)->default_value(o.backend), "communicator: auto | mpi | nccl")
    ("sp_algo", po::value(&o.sp_algo)->default_value(o.sp_algo), "exchange of the sp ranks' summaries: auto | tree | exscan | allgather | ring | blelloch")
    ("device", po::value(&o.device)->default_value(o.device), "cpu | cuda (GPU local_rank % count) | cuda:N")
    ("checkpoint_dir", po::value(&o.checkpoint_dir)->default_value(o.checkpoint_dir), "directory of checkpoints (empty: none)")
    ("save_every", po::value(&o.save_every)->default_value(o.save_every), "save a training checkpoint every N steps (0: only at the end)")
    ("checkpoint_every", po::value(&text.checkpoint_every), "deprecated name of save_every")
    ("keep_checkpoints", po::value(&o.keep_checkpoints)->default_value(o.keep_checkpoints), "keep the newest K checkpoints")
    ("resume", po::value(&o.resume)->default_value(o.resume), "checkpoint file to resume from, or 'latest'")
    ("overwrite", po::value(&o.overwrite)->default_value(o.overwrite), "let a fresh run replace the checkpoints in checkpoint_dir")
    ("prompt", po::value(&o.prompt)->default_value(o.prompt), "generate: text to start from")
    ("generate_tokens", po::value(&o.generate_tokens)->default_value(o.generate_tokens), "generate: bytes to produce")
    ("temperature", po::value(&o.temperature)->default_value(o.temperature), "generate: sampling temperature (0: greedy)");
  // clang-format on
}

template <typename T>
void require(bool ok, const char* key, const char* rule, const T& value) {
  if (ok) return;
  std::ostringstream msg;
  msg << "invalid value for '" << key << "': must be " << rule << " (got " << value << ")";
  throw OptionsError(msg.str());
}

}  // namespace

bool parse_options(int argc, const char* const* argv, TrainOptions& options,
                   std::string* help_out) {
  po::options_description desc("seqpar-train options (config keys are the same names)");
  TextKeys text;
  describe(desc, options, text);
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
  } catch (const po::error& e) {
    throw OptionsError(std::string("command line: ") + e.what());
  }
  if (vm.count("help")) {
    std::ostringstream text;
    text << desc;
    if (help_out) *help_out = text.str();
    return false;
  }
  if (vm.count("config")) {
    const auto path = vm["config"].as<std::string>();
    std::ifstream file(path);
    if (!file) throw OptionsError("config file '" + path + "' cannot be read");
    try {
      po::store(po::parse_config_file(file, desc, /*allow_unregistered=*/false), vm);
    } catch (const po::error& e) {
      throw OptionsError(path + ": " + e.what());
    }
  }
  try {
    po::notify(vm);
  } catch (const po::error& e) {
    throw OptionsError(e.what());
  }
  options.data = split_paths(text.data);
  try {
    options.model = models::parse_model_kind(text.model);
  } catch (const std::invalid_argument&) {
    require(false, "model", "one of: manifold, linoss, gla, gated_deltanet, psm", text.model);
  }
  if (vm.count("checkpoint_every")) {
    std::cerr << "seqpar-train: 'checkpoint_every' is deprecated, use 'save_every' (the training "
                 "checkpoint interval; seqpar::ScanOptions::checkpoint_every is the scan's "
                 "recompute chunk)\n";
    if (vm["save_every"].defaulted()) options.save_every = text.checkpoint_every;
  }
  validate(options);
  return true;
}

void validate(const TrainOptions& o) {
  require(o.mode == "train" || o.mode == "generate", "mode", "train or generate", o.mode);
  require(o.psm_chunk >= 1, "psm_chunk", ">= 1", o.psm_chunk);
  require(o.conv_size >= 0, "conv_size", ">= 0", o.conv_size);
  require(o.steps >= 1, "steps", ">= 1", o.steps);
  require(o.stop_after >= 0 && o.stop_after <= o.steps, "stop_after", "in [0, steps]",
          o.stop_after);
  require(o.log_every >= 1, "log_every", ">= 1", o.log_every);
  require(o.val_every >= 0, "val_every", ">= 0", o.val_every);
  require(o.threads >= 0, "threads", ">= 0", o.threads);
  require(o.d_model >= 1, "d_model", ">= 1", o.d_model);
  require(o.layers >= 1, "layers", ">= 1", o.layers);
  require(o.heads >= 1 && o.d_model % o.heads == 0, "heads", ">= 1 and divide d_model", o.heads);
  require(o.mlp_hidden >= 0, "mlp_hidden", ">= 0", o.mlp_hidden);
  require(o.dt_min > 0 && std::isfinite(o.dt_min), "dt_min", "> 0", o.dt_min);
  require(o.dt_max >= o.dt_min && std::isfinite(o.dt_max), "dt_max", ">= dt_min", o.dt_max);
  require(o.energy_lambda >= 0 && std::isfinite(o.energy_lambda), "energy_lambda", ">= 0",
          o.energy_lambda);
  require(o.task == "text" || o.task == "copy" || o.task == "mqar" || o.task == "s5", "task",
          "one of: text, copy, mqar, s5", o.task);
  require(o.val_length >= 0, "val_length", ">= 0", o.val_length);
  require(o.val_length == 0 || o.task == "s5", "val_length", "0 unless task = s5", o.val_length);
  require(o.perm_elements >= 3 && o.perm_elements <= 5, "perm_elements", "3, 4 or 5",
          o.perm_elements);
  require(o.task != "text" || !o.data.empty(), "data", "at least one path for task = text",
          "(empty)");
  require(o.val_fraction > 0 && o.val_fraction < 1, "val_fraction", "in (0, 1)", o.val_fraction);
  require(o.val_tokens >= 0, "val_tokens", ">= 0", o.val_tokens);
  require(!o.pack_documents || o.task == "text", "pack_documents",
          "false unless task = text (each file of the corpus a document)", "true");
  require(!o.pack_documents || o.model != models::ModelKind::kPsm, "pack_documents",
          "false for model = psm (its learned aggregation of chunk states has no restart at a "
          "document start)", "true");
  require(!o.pack_documents || o.energy_lambda == 0, "pack_documents",
          "false with energy_lambda > 0 (the energy-drift term is not split at document starts)",
          "true");
  require(!o.pack_documents || o.matrix_recompute_tokens == 0, "pack_documents",
          "false with matrix_recompute_tokens > 0", "true");
  require(!o.second_order || o.model == models::ModelKind::kManifold, "second_order",
          "false unless model = manifold", "true");
  require(!o.second_order || !o.rotation, "second_order",
          "false with rotation (complex retention; the block scan is real)", "true");
  require(!o.second_order || !o.pack_documents, "second_order",
          "false with pack_documents (the block scan has no packed sequences)", "true");
  require(o.model != models::ModelKind::kLinoss || !o.rotation, "rotation",
          "false for model = linoss (its oscillator replaces the retention; the block scan is "
          "real)", "true");
  require(o.model != models::ModelKind::kLinoss || !o.pack_documents, "pack_documents",
          "false for model = linoss (the block scan has no packed sequences)", "true");
  require(o.val_sequences >= 1, "val_sequences", ">= 1", o.val_sequences);
  require(o.seq_len >= 2, "seq_len", ">= 2", o.seq_len);
  require(o.batch >= 1, "batch", ">= 1", o.batch);
  require(o.copy_tokens >= 1, "copy_tokens", ">= 1", o.copy_tokens);
  require(o.task != "copy" || o.seq_len >= 2 * o.copy_tokens + 2, "seq_len",
          ">= 2 * copy_tokens + 2 for task = copy", o.seq_len);
  require(o.mqar_pairs >= 1 && o.mqar_pairs <= 64, "mqar_pairs", "in [1, 64]", o.mqar_pairs);
  require(o.mqar_min_distance >= 2, "mqar_min_distance", ">= 2", o.mqar_min_distance);
  require(o.mqar_max_distance >= o.mqar_min_distance, "mqar_max_distance",
          ">= mqar_min_distance", o.mqar_max_distance);
  require(o.task != "mqar" || o.seq_len >= o.mqar_min_distance + 8 * o.mqar_pairs + 4, "seq_len",
          ">= mqar_min_distance + 8 * mqar_pairs + 4 for task = mqar", o.seq_len);
  require(o.lr > 0 && std::isfinite(o.lr), "lr", "> 0", o.lr);
  require(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]",
          o.min_lr_ratio);
  require(o.warmup >= 0, "warmup", ">= 0", o.warmup);
  require(o.weight_decay >= 0, "weight_decay", ">= 0", o.weight_decay);
  require(o.beta1 >= 0 && o.beta1 < 1, "beta1", "in [0, 1)", o.beta1);
  require(o.beta2 >= 0 && o.beta2 < 1, "beta2", "in [0, 1)", o.beta2);
  require(o.grad_clip >= 0, "grad_clip", ">= 0", o.grad_clip);
  require(o.seed >= 0, "seed", ">= 0", o.seed);
  require(o.sp >= 0, "sp", ">= 0", o.sp);
  require(o.matrix_recompute_tokens >= 0, "matrix_recompute_tokens", ">= 0",
          o.matrix_recompute_tokens);
  // sp = 0 (all ranks) is checked by the trainer, which knows the number of ranks.
  require(o.matrix_recompute_tokens == 0 || o.sp <= 1, "matrix_recompute_tokens",
          "0 unless sp = 1 (with sequence parallelism a rank holds 1/sp of the sequence)",
          o.matrix_recompute_tokens);
  require(o.backend == "auto" || o.backend == "mpi" || o.backend == "nccl", "backend",
          "one of: auto, mpi, nccl", o.backend);
  bool known_sp_algo = true;
  try {
    comm::parse_exchange_algo(o.sp_algo);
  } catch (const std::invalid_argument&) {
    known_sp_algo = false;
  }
  require(known_sp_algo, "sp_algo", "one of: auto, tree, exscan, allgather, ring, blelloch",
          o.sp_algo);
  require(o.device == "cpu" || o.device == "cuda" || o.device.rfind("cuda:", 0) == 0, "device",
          "cpu, cuda or cuda:N", o.device);
  require(o.save_every >= 0, "save_every", ">= 0", o.save_every);
  require(o.keep_checkpoints >= 1, "keep_checkpoints", ">= 1", o.keep_checkpoints);
  require(o.resume.empty() || !o.checkpoint_dir.empty() || o.resume != "latest", "resume",
          "a file path when checkpoint_dir is empty", o.resume);
  require(o.mode != "generate" || !o.resume.empty(), "resume",
          "a checkpoint to load for mode = generate", "(empty)");
  require(o.generate_tokens >= 0, "generate_tokens", ">= 0", o.generate_tokens);
  require(o.temperature >= 0, "temperature", ">= 0", o.temperature);
}

void validate_for_sp_size(const TrainOptions& o, int sp_size) {
  require(o.seq_len >= sp_size, "seq_len", "at least the sp size", o.seq_len);
  std::ostringstream rule;
  rule << "0 unless the sp group has one rank (it has " << sp_size
       << "; with sequence parallelism a rank holds 1/sp of the sequence)";
  require(o.matrix_recompute_tokens == 0 || sp_size == 1, "matrix_recompute_tokens",
          rule.str().c_str(), o.matrix_recompute_tokens);
}

std::string fingerprint(const TrainOptions& o) {
  std::ostringstream f;
  f.precision(17);
  f << "model=" << models::model_kind_name(o.model) << "\nd_model=" << o.d_model << "\nlayers=" << o.layers
    << "\nheads=" << o.heads << "\nmlp_hidden=" << o.effective_mlp_hidden()
    << "\nrotation=" << o.rotation << "\ndt_min=" << o.dt_min << "\ndt_max=" << o.dt_max
    << "\nenergy_lambda=" << o.energy_lambda << "\ntask=" << o.task
    << "\ndata=" << join_paths(o.data) << "\nval_fraction=" << o.val_fraction
    << "\nseq_len=" << o.seq_len << "\nbatch=" << o.batch << "\ncopy_tokens=" << o.copy_tokens
    << "\nmqar_pairs=" << o.mqar_pairs << "\nmqar_min_distance=" << o.mqar_min_distance
    << "\nmqar_max_distance=" << o.mqar_max_distance << "\nsteps=" << o.steps
    << "\nlr=" << o.lr << "\nmin_lr_ratio=" << o.min_lr_ratio << "\nwarmup=" << o.warmup
    << "\nweight_decay=" << o.weight_decay << "\nbeta1=" << o.beta1 << "\nbeta2=" << o.beta2
    << "\ngrad_clip=" << o.grad_clip << "\nseed=" << o.seed << "\n";
  // Keys added later enter only where they apply, so earlier checkpoints keep their fingerprint.
  if (o.model == models::ModelKind::kPsm) f << "psm_chunk=" << o.psm_chunk << "\n";
  const bool matrix_state = models::has_matrix_state(o.model);
  if (matrix_state && o.conv_size != 0) f << "conv_size=" << o.conv_size << "\n";
  if (matrix_state && o.qk_l2norm) f << "qk_l2norm=1\n";
  if (o.task == "s5") f << "perm_elements=" << o.perm_elements << "\n";
  if (o.pack_documents) f << "pack_documents=1\n";
  return f.str();
}

}  // namespace seqpar::train
