// seqpar-train: trains the byte-level ManifoldScan LM with every sequence split across the
// sequence-parallel ranks of an mpirun / torchrun job, or generates text from a checkpoint.
//
//   seqpar-train --config configs/quickstart.ini [--key value ...]
//   seqpar-train --config configs/quickstart.ini --mode generate --resume latest --prompt "The "
//
// Exit status: 0 success, 2 bad options (message names the key), 1 any other error (bad
// checkpoint, unreadable data, communication failure). Under mpirun a rank exiting non-zero
// makes mpirun stop the whole job.
#include <seqpar/comm/bootstrap.h>
#include <seqpar/train/checkpoint.h>
#include <seqpar/train/generate.h>
#include <seqpar/train/options.h>
#include <seqpar/train/trainer.h>

#include <iostream>

namespace {

int run_generate(const seqpar::train::TrainOptions& options) {
  using namespace seqpar::train;
  if (options.threads > 0) torch::set_num_threads(options.threads);
  torch::manual_seed(static_cast<uint64_t>(options.seed));
  seqpar::models::ByteLM model(model_options(options));
  const std::string path = resolve_checkpoint(options.resume, options.checkpoint_dir);
  // The model keys must match; the optimizer and schedule keys may differ in generate mode.
  load_checkpoint(path, "", model, nullptr);
  std::cout << options.prompt
            << generate(model, options.prompt, options.generate_tokens, options.temperature)
            << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  seqpar::train::TrainOptions options;
  try {
    std::string help;
    if (!seqpar::train::parse_options(argc, argv, options, &help)) {
      std::cout << help;
      return 0;
    }
  } catch (const seqpar::train::OptionsError& e) {
    std::cerr << "seqpar-train: " << e.what() << "\n";
    return 2;
  }
  if (options.keep_freed_memory) seqpar::train::keep_freed_host_memory();
  int rank = 0;
  try {
    if (options.mode == "generate") return run_generate(options);
    seqpar::comm::BootstrapOptions boot;
    boot.backend = seqpar::comm::parse_backend(options.backend);
    std::shared_ptr<seqpar::comm::Communicator> world = seqpar::comm::make_world(boot);
    rank = world->rank();
    const int sp = options.sp > 0 ? static_cast<int>(options.sp) : world->size();
    if (world->size() % sp != 0) {
      std::cerr << "seqpar-train: invalid value for 'sp': must divide the number of ranks ("
                << world->size() << "), got " << sp << "\n";
      return 2;
    }
    auto grid = seqpar::comm::make_grid(world, sp);
    seqpar::train::Trainer trainer(options, grid, &std::cout);
    trainer.run();
  } catch (const c10::Error& e) {
    std::cerr << "seqpar-train (rank " << rank << "): error: " << e.what_without_backtrace()
              << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "seqpar-train (rank " << rank << "): error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
