// Shared by the mpirun trainer tests: the world communicator and small helpers.
#pragma once

#include <seqpar/comm/bootstrap.h>
#include <seqpar/train/options.h>

#include <filesystem>
#include <memory>
#include <string>

#include <unistd.h>

std::shared_ptr<seqpar::comm::Communicator> test_world();

// A grid of one rank per process (every rank runs its own single-rank copy).
inline seqpar::comm::Grid single_rank_grid() {
  auto world = test_world();
  std::shared_ptr<seqpar::comm::Communicator> self = world->split(world->rank(), 0);
  return seqpar::comm::make_grid(self, 1);
}

// A small text run on the corpus shipped with every Debian system (base-files).
inline seqpar::train::TrainOptions tiny_options() {
  seqpar::train::TrainOptions o;
  o.d_model = 32;
  o.heads = 4;
  o.layers = 1;
  o.mlp_hidden = 64;
  o.seq_len = 384;
  o.batch = 2;
  o.steps = 30;
  o.warmup = 3;
  o.lr = 1e-2;
  o.val_tokens = 256;
  o.threads = 1;
  return o;
}

inline std::string fresh_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("seqpar_train_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir.string();
}
