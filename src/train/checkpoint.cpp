// Checkpoint files (seqpar/train/checkpoint.h).
#include "seqpar/train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace seqpar::train {
namespace {

constexpr const char* kMagic = "SEQPAR-CHECKPOINT 1";

uint64_t fnv1a(const std::string& a, const std::string& b) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const std::string* s : {&a, &b}) {
    for (unsigned char c : *s) h = (h ^ c) * 0x100000001b3ULL;
  }
  return h;
}

std::map<std::string, std::string> parse_fingerprint(const std::string& text) {
  std::map<std::string, std::string> keys;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) keys[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return keys;
}

// Tensors in a module archive, nested archives included. Module::load reads the model's own
// parameters and buffers and ignores anything else, so a checkpoint of a larger model (more
// layers, a short convolution) would otherwise load silently into a smaller one.
size_t archive_tensors(torch::serialize::InputArchive& archive) {
  size_t n = 0;
  for (const auto& key : archive.keys()) {
    torch::serialize::InputArchive child;
    at::Tensor tensor;
    if (archive.try_read(key, child)) n += archive_tensors(child);
    else if (archive.try_read(key, tensor)) ++n;
  }
  return n;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw CheckpointError("checkpoint '" + path + "': " + what);
}

}  // namespace

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof(name), "step_%08lld.ckpt", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("step_", 0) == 0 && entry.path().extension() == ".ckpt")
      files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());  // zero-padded step numbers sort by step
  return files;
}

void prune_checkpoints(const std::string& dir, int64_t keep) {
  auto files = list_checkpoints(dir);
  for (size_t i = 0; i + keep < files.size(); ++i) {
    std::error_code ec;
    fs::remove(files[i], ec);
  }
}

void save_checkpoint(const std::string& path, const std::string& fingerprint,
                     models::ByteLM& model, torch::optim::Optimizer& optimizer,
                     const TrainProgress& progress) {
  torch::serialize::OutputArchive root, model_archive, optimizer_archive;
  model->save(model_archive);
  optimizer.save(optimizer_archive);
  root.write("model", model_archive);
  root.write("optimizer", optimizer_archive);
  root.write("step", c10::IValue(progress.step));
  root.write("next_sequence", c10::IValue(progress.next_sequence));
  root.write("rng_state", progress.rng_state);
  std::ostringstream payload_stream;
  root.save_to(payload_stream);
  const std::string payload = payload_stream.str();

  const auto parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(path, "cannot create temporary file '" + tmp + "'");
    out << kMagic << "\nstep " << progress.step << "\nfingerprint_bytes " << fingerprint.size()
        << "\npayload_bytes " << payload.size() << "\nchecksum " << std::hex
        << fnv1a(fingerprint, payload) << std::dec << "\n";
    out.write(fingerprint.data(), fingerprint.size());
    out.write(payload.data(), payload.size());
    out.flush();
    if (!out) fail(path, "write to '" + tmp + "' failed (disk full?)");
  }
  // fsync the data before the rename makes it visible under the final name.
  if (FILE* f = std::fopen(tmp.c_str(), "rb")) {
    ::fsync(fileno(f));
    std::fclose(f);
  }
  fs::rename(tmp, path, ec);
  if (ec) fail(path, "rename from '" + tmp + "' failed: " + ec.message());
}

TrainProgress load_checkpoint(const std::string& path, const std::string& expected_fingerprint,
                              models::ByteLM& model, torch::optim::Optimizer* optimizer,
                              torch::Device device) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot be opened");
  std::string magic, key;
  std::getline(in, magic);
  if (magic != kMagic) fail(path, "not a seqpar checkpoint (bad magic line)");
  int64_t step = -1;
  size_t fingerprint_bytes = 0, payload_bytes = 0;
  uint64_t checksum = 0;
  in >> key >> step;
  if (key != "step" || !in) fail(path, "corrupt header (step)");
  in >> key >> fingerprint_bytes;
  if (key != "fingerprint_bytes" || !in) fail(path, "corrupt header (fingerprint_bytes)");
  in >> key >> payload_bytes;
  if (key != "payload_bytes" || !in) fail(path, "corrupt header (payload_bytes)");
  in >> key >> std::hex >> checksum >> std::dec;
  if (key != "checksum" || !in) fail(path, "corrupt header (checksum)");
  in.get();  // the newline ending the header
  const auto body_start = in.tellg();
  in.seekg(0, std::ios::end);
  const auto available = static_cast<size_t>(in.tellg() - body_start);
  if (available != fingerprint_bytes + payload_bytes) {
    fail(path, "truncated or padded: header promises " +
                   std::to_string(fingerprint_bytes + payload_bytes) + " bytes, file has " +
                   std::to_string(available));
  }
  in.seekg(body_start);
  std::string fingerprint(fingerprint_bytes, '\0'), payload(payload_bytes, '\0');
  in.read(fingerprint.data(), fingerprint_bytes);
  in.read(payload.data(), payload_bytes);
  if (!in) fail(path, "read failed");
  if (fnv1a(fingerprint, payload) != checksum) fail(path, "checksum mismatch (corrupt file)");

  if (!expected_fingerprint.empty() && fingerprint != expected_fingerprint) {
    auto saved = parse_fingerprint(fingerprint), wanted = parse_fingerprint(expected_fingerprint);
    std::string diff;
    for (const auto& [k, v] : wanted) {
      auto it = saved.find(k);
      const std::string old = it == saved.end() ? "(absent)" : it->second;
      if (old != v) diff += "\n  " + k + ": checkpoint " + old + ", this run " + v;
    }
    for (const auto& [k, v] : saved)
      if (!wanted.count(k)) diff += "\n  " + k + ": checkpoint " + v + ", this run (absent)";
    fail(path, "was written with different options:" + diff +
                   "\n  (resume with the original options, or start a fresh run elsewhere)");
  }

  TrainProgress progress;
  try {
    torch::serialize::InputArchive root, model_archive, optimizer_archive;
    root.load_from(payload.data(), payload.size(), device);
    root.read("model", model_archive);
    model->load(model_archive);
    const size_t saved_tensors = archive_tensors(model_archive),
                 model_tensors = model->parameters().size() + model->buffers().size();
    if (saved_tensors != model_tensors) {
      fail(path, "holds " + std::to_string(saved_tensors) + " model tensors, this run's model has " +
                     std::to_string(model_tensors) +
                     ": it was written for a different model (model, layers, conv_size, ...)");
    }
    if (optimizer) {
      root.read("optimizer", optimizer_archive);
      optimizer->load(optimizer_archive);
    }
    c10::IValue value;
    root.read("step", value);
    progress.step = value.toInt();
    root.read("next_sequence", value);
    progress.next_sequence = value.toInt();
    root.read("rng_state", progress.rng_state);
    progress.rng_state = progress.rng_state.to(torch::kCPU);
  } catch (const c10::Error& e) {
    fail(path, std::string("payload does not match this model: ") + e.what_without_backtrace());
  }
  if (progress.step != step) fail(path, "header step disagrees with the payload");
  return progress;
}

std::string resolve_checkpoint(const std::string& resume, const std::string& dir) {
  if (resume != "latest") return resume;
  const auto files = list_checkpoints(dir);
  if (files.empty())
    throw CheckpointError("resume = latest, but '" + dir + "' holds no checkpoints");
  return files.back();
}

ResumePlan plan_resume(const std::string& resume, const std::string& checkpoint_dir,
                       bool overwrite) {
  ResumePlan plan;
  if (!resume.empty()) {
    plan.checkpoint = resolve_checkpoint(resume, checkpoint_dir);
  } else if (!checkpoint_dir.empty() && !list_checkpoints(checkpoint_dir).empty()) {
    if (!overwrite)
      throw CheckpointError("checkpoint_dir '" + checkpoint_dir +
                            "' already holds checkpoints; pass --resume latest to continue, "
                            "--overwrite true to start over, or another --checkpoint_dir");
    plan.clear_checkpoint_dir = true;
  }
  return plan;
}

}  // namespace seqpar::train
