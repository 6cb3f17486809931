// The training loop (seqpar/train/trainer.h).
#include "seqpar/train/trainer.h"

#include "seqpar/train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <seqpar/comm/exchange_algo.h>
#include <seqpar/memory.h>
#include <seqpar/scan.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <climits>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <mutex>
#include <sstream>
#include <unistd.h>

namespace seqpar::train {
namespace {

using Clock = std::chrono::steady_clock;

comm::MutableBuffer float_buffer(at::Tensor& t) {
  return comm::host_buffer(t.data_ptr(), t.numel() * sizeof(float), comm::DataType::kFloat32);
}
comm::MutableBuffer double_buffer(at::Tensor& t) {
  return comm::host_buffer(t.data_ptr(), t.numel() * sizeof(double), comm::DataType::kFloat64);
}

at::Tensor get_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}
void set_rng_state(const at::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = static_cast<long>(seconds + 0.5);
  char text[32];
  if (s >= 3600) std::snprintf(text, sizeof(text), "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else std::snprintf(text, sizeof(text), "%ldm%02lds", s / 60, s % 60);
  return text;
}

}  // namespace

void keep_freed_host_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
#endif
}

torch::Device select_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  TORCH_CHECK(torch::cuda::is_available(), "device = ", name,
              ", but LibTorch sees no CUDA device (CPU-only build or no GPU)");
  if (name != "cuda") return torch::Device(name);
  const auto launch = comm::detect_launch();
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(comm::device_for_local_rank(
                                         launch.local_rank, torch::cuda::device_count())));
}

models::ByteLMOptions model_options(const TrainOptions& o) {
  models::ByteLMOptions m;
  m.layers = o.layers;
  m.kind = o.model;
  models::BlockOptions shared;
  shared.d_model = o.d_model;
  shared.heads = o.heads;
  shared.mlp_hidden = o.effective_mlp_hidden();
  static_cast<models::BlockOptions&>(m.block) = shared;
  static_cast<models::BlockOptions&>(m.matrix_block) = shared;
  static_cast<models::BlockOptions&>(m.psm_block) = shared;
  m.block.rotation = o.rotation;
  m.block.second_order = o.second_order;
  m.block.dt_min = o.dt_min;
  m.block.dt_max = o.dt_max;
  m.matrix_block.conv_size = o.conv_size;
  m.matrix_block.qk_l2norm = o.qk_l2norm;
  m.matrix_block.recompute_slice_tokens = o.matrix_recompute_tokens;
  m.psm_block.chunk_size = o.psm_chunk;
  m.psm_block.recompute = o.psm_recompute;
  return m;
}

double learning_rate(const TrainOptions& o, int64_t step) {
  if (o.warmup > 0 && step <= o.warmup) return o.lr * step / o.warmup;
  const double span = std::max<int64_t>(o.steps - o.warmup, 1);
  const double progress = std::min(1.0, (step - o.warmup) / span);
  const double floor = o.lr * o.min_lr_ratio;
  return floor + 0.5 * (o.lr - floor) * (1 + std::cos(M_PI * progress));
}

Trainer::Trainer(const TrainOptions& options, comm::Grid grid, std::ostream* log)
    : options_(options), grid_(std::move(grid)), log_(log) {
  if (options_.threads > 0) torch::set_num_threads(options_.threads);
  validate_for_sp_size(options_, grid_.sp_size);
  task_ = make_task(options_);
  // The same seed on every rank: identical initial parameters without a broadcast.
  torch::manual_seed(static_cast<uint64_t>(options_.seed));
  // Initialised on the CPU, then moved: the same parameters whatever the device.
  model_ = models::ByteLM(model_options(options_));
  device_ = select_device(options_.device);
  model_->to(device_);
  backend_ = grid_.sp_size > 1
                 ? models::sp_backend(grid_.sp, comm::parse_exchange_algo(options_.sp_algo))
                 : models::local_backend();

  // Weight decay on matrices only; norms, biases, phases and the embedding are not decayed.
  std::vector<at::Tensor> decayed, plain;
  for (const auto& item : model_->named_parameters()) {
    const bool matrix = item.value().dim() >= 2 && item.key().find("embed") == std::string::npos;
    (matrix ? decayed : plain).push_back(item.value());
  }
  auto defaults = torch::optim::AdamWOptions(options_.lr)
                      .betas({options_.beta1, options_.beta2})
                      .weight_decay(options_.weight_decay);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed, std::make_unique<torch::optim::AdamWOptions>(defaults));
  auto no_decay = defaults;
  no_decay.weight_decay(0.0);
  groups.emplace_back(plain, std::make_unique<torch::optim::AdamWOptions>(no_decay));
  optimizer_ = std::make_unique<torch::optim::AdamW>(groups, defaults);
}

std::pair<int64_t, int64_t> Trainer::my_slice(int64_t length) const {
  // psm scans chunks across ranks in one fixed tree: each rank needs an aligned block of them.
  if (options_.model == models::ModelKind::kPsm)
    return aligned_slice_range(length, grid_.sp_rank, grid_.sp_size, options_.psm_chunk);
  return slice_range(length, grid_.sp_rank, grid_.sp_size);
}

void Trainer::reduce_gradients(double& loss) {
  std::vector<at::Tensor> flat;
  auto params = model_->parameters();
  for (auto& p : params)
    flat.push_back(p.grad().defined() ? p.grad().reshape(-1).to(torch::kCPU)
                                      : torch::zeros({p.numel()}));
  flat.push_back(torch::full({1}, loss, torch::kFloat32));
  auto buffer = torch::cat(flat).contiguous();
  if (grid_.world->size() > 1) grid_.world->all_reduce_sum(float_buffer(buffer));
  buffer.div_(grid_.dp_size);
  int64_t offset = 0;
  for (auto& p : params) {
    auto part = buffer.slice(0, offset, offset + p.numel()).view(p.sizes()).to(p.device());
    if (p.grad().defined()) p.mutable_grad().copy_(part);
    else p.mutable_grad() = part.clone();
    offset += p.numel();
  }
  loss = buffer[offset].item<double>();
}

at::Tensor Trainer::logits_of(const Slice& slice, at::Tensor* energy_drift) {
  const at::Tensor inputs = slice.inputs.to(device_);
  if (slice.documents.empty()) return model_->forward(inputs, backend_, nullptr, energy_drift);
  // Packed sequences take batch 1 (cu_seqlens): one forward per row.
  std::vector<at::Tensor> rows;
  for (int64_t b = 0; b < inputs.size(0); ++b) {
    rows.push_back(model_->forward(inputs.narrow(0, b, 1), backend_, nullptr, energy_drift,
                                   slice.documents.at(b)));
  }
  return torch::cat(rows, 0);
}

double Trainer::compute_gradients(int64_t first_sequence) {
  const auto [begin, end] = my_slice(options_.seq_len);
  auto slice = task_->train_slice(first_sequence + grid_.dp_rank * options_.batch,
                                  options_.batch, begin, end);
  optimizer_->zero_grad();
  at::Tensor drift;
  const bool regularize = options_.energy_lambda > 0;
  auto logits = logits_of(slice, regularize ? &drift : nullptr);
  auto ce = torch::nn::functional::cross_entropy(
      logits.reshape({-1, models::ByteLMOptions::kVocab}), slice.targets.reshape(-1).to(device_),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  auto loss = (ce * slice.weights.reshape(-1).to(device_)).sum() / (options_.batch * task_->train_weight());
  if (regularize && drift.defined()) {  // matrix-state models have no energy term
    loss = loss + options_.energy_lambda * drift /
                      (options_.batch * std::max<int64_t>(options_.seq_len - 1, 1));
  }
  loss.backward();
  double value = loss.item<double>();
  reduce_gradients(value);
  return value;
}

double Trainer::validate() {
  torch::NoGradGuard no_grad;
  const int64_t length = task_->val_length();
  const auto [begin, end] = my_slice(length);
  // [0]: summed cross-entropy, [1..256]: weighted counts of the target bytes, [257]: weighted
  // count of targets predicted by the arg max.
  auto totals = torch::zeros({258}, torch::kFloat64);
  for (int64_t i = 0; i < task_->val_count(); ++i) {
    auto slice = task_->val_slice(i, begin, end);
    auto logits = logits_of(slice);
    auto ce = torch::nn::functional::cross_entropy(
        logits.reshape({-1, models::ByteLMOptions::kVocab}), slice.targets.reshape(-1).to(device_),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    auto w = slice.weights.reshape(-1);
    totals[0] += (ce * w.to(device_)).sum().to(torch::kCPU, torch::kFloat64);
    totals.slice(0, 1, 257).index_add_(0, slice.targets.reshape(-1), w.to(torch::kFloat64));
    auto hit = (logits.reshape({-1, models::ByteLMOptions::kVocab}).argmax(-1).to(torch::kCPU) ==
                slice.targets.reshape(-1)).to(torch::kFloat64);
    totals[257] += (hit * w.to(torch::kFloat64)).sum();
  }
  // dp groups evaluate the same validation data; sum over the sp group only.
  if (grid_.sp->size() > 1) grid_.sp->all_reduce_sum(double_buffer(totals));
  const double count = task_->val_count() * task_->val_weight();
  auto freq = totals.slice(0, 1, 257);
  auto p = freq / freq.sum();
  val_accuracy_ = totals[257].item<double>() / count;
  unigram_loss_ = -(p * torch::log(p.clamp_min(1e-300))).sum().item<double>();
  return totals[0].item<double>() / count;
}

void Trainer::load(const std::string& path) {
  auto progress =
      load_checkpoint(path, fingerprint(options_), model_, optimizer_.get(), device_);
  step_ = progress.step;
  next_sequence_ = progress.next_sequence;
  set_rng_state(progress.rng_state);
}

void Trainer::save(int64_t step) {
  if (options_.checkpoint_dir.empty()) return;
  // Every rank holds identical parameters and optimizer state; rank 0 writes (the directory
  // must be shared by all nodes for multi-node resume).
  if (grid_.world->rank() == 0) {
    TrainProgress progress{step, next_sequence_, get_rng_state()};
    save_checkpoint(checkpoint_path(options_.checkpoint_dir, step), fingerprint(options_),
                    model_, *optimizer_, progress);
    prune_checkpoints(options_.checkpoint_dir, options_.keep_checkpoints);
  }
  grid_.world->barrier();
}

TrainSummary Trainer::run() {
  const bool rank0 = grid_.world->rank() == 0;
  std::ostream* out = rank0 ? log_ : nullptr;
  const ResumePlan plan =
      plan_resume(options_.resume, options_.checkpoint_dir, options_.overwrite);
  if (!plan.checkpoint.empty()) {
    load(plan.checkpoint);
    if (out) *out << "resumed from " << plan.checkpoint << " at step " << step_ << "\n";
  } else if (plan.clear_checkpoint_dir && rank0) {
    for (const auto& f : list_checkpoints(options_.checkpoint_dir)) std::filesystem::remove(f);
  }
  grid_.world->barrier();

  std::ofstream metrics;
  if (rank0 && !options_.metrics.empty()) {
    auto parent = std::filesystem::path(options_.metrics).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    metrics.open(options_.metrics, options_.resume.empty() ? std::ios::trunc : std::ios::app);
    if (!metrics) throw std::runtime_error("cannot write metrics file '" + options_.metrics + "'");
  }

  const int64_t last = options_.stop_after > 0 ? options_.stop_after : options_.steps;
  const int64_t tokens_per_step = grid_.dp_size * options_.batch * options_.seq_len;
  const bool bar = out && options_.progress_bar && ::isatty(STDOUT_FILENO);
  if (out) {
    *out << "seqpar-train: " << task_->describe() << "\n"
         << "  model " << models::model_kind_name(options_.model) << ": d_model " << options_.d_model << ", layers " << options_.layers
         << ", heads " << options_.heads << ", " << [&] {
              int64_t n = 0;
              for (auto& p : model_->parameters()) n += p.numel();
              return n;
            }() << " parameters\n"
         << "  ranks " << grid_.world->size() << " (dp " << grid_.dp_size << " x sp "
         << grid_.sp_size << "), " << options_.seq_len << " tokens per sequence ("
         << options_.seq_len / grid_.sp_size << " per sp rank), batch " << options_.batch
         << " per dp rank, steps " << step_ + 1 << ".." << last << "\n"
         << "  device " << device_.str() << ", CPU kernels " << seqpar::cpu_capability()
         << ", intra-op threads " << at::get_num_threads() << "\n";
  }

  TrainSummary summary;
  summary.first_step = step_ + 1;
  const auto start = Clock::now();
  double train_seconds = 0;
  int64_t steps_timed = 0;
  while (step_ < last) {
    const auto t0 = Clock::now();
    const int64_t step = step_ + 1;
    const double lr = learning_rate(options_, step);
    for (auto& group : optimizer_->param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    const double loss = compute_gradients(next_sequence_);
    if (options_.grad_clip > 0)
      torch::nn::utils::clip_grad_norm_(model_->parameters(), options_.grad_clip);
    optimizer_->step();
    next_sequence_ += grid_.dp_size * options_.batch;
    step_ = step;
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    train_seconds += seconds, ++steps_timed;

    StepRecord record{step, loss, lr, tokens_per_step / seconds, std::nullopt};
    const bool final_step = step == last;
    if (final_step || (options_.val_every > 0 && step % options_.val_every == 0)) {
      record.val_loss = validate();
      summary.val_loss = *record.val_loss;
    }
    summary.history.push_back(record);
    if (metrics.is_open()) {
      nlohmann::json j{{"step", step}, {"loss", loss}, {"tokens_per_s", record.tokens_per_s},
                       {"lr", lr}};
      if (record.val_loss) {
        j["val_loss"] = *record.val_loss;
        j["val_accuracy"] = val_accuracy_;
      }
      if (final_step) {
        j["unigram_loss"] = unigram_loss_;
        j["peak_host_mib"] = peak_host_memory_bytes() >> 20;
        const int64_t device_peak = peak_device_memory_bytes(device_);
        if (device_peak >= 0) j["peak_device_mib"] = device_peak >> 20;
      }
      metrics << j.dump() << "\n" << std::flush;
    }
    if (out && (step % options_.log_every == 0 || final_step || record.val_loss)) {
      const double eta = train_seconds / steps_timed * (last - step);
      std::ostringstream line;
      line << "step " << step << "/" << last << " | loss " << std::fixed << std::setprecision(4)
           << loss;
      if (record.val_loss) line << " | val " << *record.val_loss;
      line << " | lr " << std::scientific << std::setprecision(2) << lr << std::fixed
           << " | " << std::setprecision(0) << record.tokens_per_s << " tok/s | eta "
           << format_duration(eta);
      if (bar) {
        const int width = 24, filled = static_cast<int>(width * step / last);
        *out << "\r[" << std::string(filled, '#') << std::string(width - filled, '.') << "] "
             << line.str() << "\033[K" << (final_step ? "\n" : "") << std::flush;
      } else {
        *out << line.str() << "\n" << std::flush;
      }
    }
    const bool periodic = options_.save_every > 0 && step % options_.save_every == 0;
    if (periodic || final_step) save(step);
  }
  if (summary.history.empty() || !std::isfinite(summary.val_loss)) {
    summary.val_loss = validate();
  }
  summary.last_step = step_;
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  summary.unigram_loss = unigram_loss_;
  summary.val_accuracy = val_accuracy_;
  summary.peak_host_bytes = peak_host_memory_bytes();
  summary.peak_device_bytes = peak_device_memory_bytes(device_);
  if (out) {
    *out << std::fixed << std::setprecision(4) << "summary: steps " << summary.first_step
         << ".." << summary.last_step << " in " << std::setprecision(1) << summary.seconds
         << " s | val loss " << std::setprecision(4) << summary.val_loss
         << " nats/byte | unigram baseline " << summary.unigram_loss << " nats/byte | "
         << (summary.val_loss < summary.unigram_loss ? "below" : "NOT below")
         << " the baseline by " << summary.unigram_loss - summary.val_loss
         << " | val accuracy " << summary.val_accuracy << " | peak memory "
         << (summary.peak_host_bytes >> 20) << " MiB host";
    if (summary.peak_device_bytes >= 0) *out << ", " << (summary.peak_device_bytes >> 20) << " MiB device";
    *out << " (rank 0)\n" << std::flush;
  }
  return summary;
}

}  // namespace seqpar::train
