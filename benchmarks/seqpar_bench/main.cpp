// seqpar-bench: one benchmark program for the parts of seqpar, run alone, under mpirun or under
// torchrun (docs/benchmarks.md). Every result is a record carrying its environment (record.h).
//
//   seqpar-bench exchange [--summary diagonal,matrix] [common options]
//   seqpar-bench sp_scan (--tokens N | --tokens_per_rank N) [--channels 64] [common options]
//   seqpar-bench psm [--d_model 64 --chunk 16 --max_tokens N --max_chunks N] [common options]
//   seqpar-bench local_scan [--dtype float32 --log2-elements 24 --naive-steps 2048
//                            --threads 1 N] [common options]                 (one process)
//   seqpar-bench block_scan [--shapes 1x4194304x64 64x65536x1 --threads 1 N --lower
//                            --dtype float32] [common options]               (one process)
//   seqpar-bench train_step [--min_log2 12 --max_log2 17 --ops --glibc_defaults] [common options]
//   common: --quick (a smoke test of about a minute), --reps N, --json PATH, --no-progress
//
// Latency can be injected into every message (SEQPAR_COMM_DELAY_US, an emulated network's
// link latency; comm/delayed_communicator.h); it is recorded in each record's env.emulation.
#include <boost/program_options.hpp>

#include <cstdio>
#include <iostream>
#include <map>

#include "bench.h"
#include "seqpar/comm/bootstrap.h"

namespace po = boost::program_options;
using namespace seqpar;

namespace seqpar::bench {

boost::program_options::variables_map parse_options(
    const boost::program_options::options_description& desc, const std::vector<std::string>& args) {
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << desc << "\n";
      throw HelpShown{};
    }
  }
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).run(), vm);
  po::notify(vm);
  return vm;
}

Timing time_slowest(comm::Communicator& world, int reps, const std::function<void()>& fn) {
  fn();
  fn();
  std::vector<double> slowest;
  std::vector<double> all(world.size());
  for (int i = 0; i < reps; ++i) {
    world.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    world.all_gather(comm::host_buffer(&t, sizeof t, comm::DataType::kFloat64),
                     comm::host_buffer(all.data(), all.size() * sizeof(double), comm::DataType::kFloat64));
    slowest.push_back(*std::max_element(all.begin(), all.end()));
  }
  return summarize(slowest);
}

}  // namespace seqpar::bench

int main(int argc, char** argv) {
  const std::map<std::string, bench::Subcommand> commands{
      {"exchange", &bench::run_exchange}, {"sp_scan", &bench::run_sp_scan}, {"psm", &bench::run_psm},
      {"local_scan", &bench::run_local_scan}, {"block_scan", &bench::run_block_scan},
      {"train_step", &bench::run_train_step}};
  auto usage = [&] {
    std::fprintf(stderr,
                 "usage: seqpar-bench SUBCOMMAND [options]\n  subcommands: exchange, sp_scan, psm, local_scan, block_scan, "
                 "train_step\n"
                 "  common options: --quick --reps N --json PATH --no-progress\n"
                 "  seqpar-bench SUBCOMMAND --help lists its own options\n");
  };
  if (argc < 2 || commands.count(argv[1]) == 0) {
    if (argc >= 2 && std::string(argv[1]) != "--help" && std::string(argv[1]) != "-h")
      std::fprintf(stderr, "seqpar-bench: unknown subcommand '%s'\n", argv[1]);
    usage();
    return 2;
  }
  const std::string sub = argv[1];
  bench::CommonOptions common;
  po::options_description desc("common options");
  desc.add_options()("help,h", "print this help")
      ("quick", po::bool_switch(&common.quick), "a smoke test that finishes in about a minute")
      ("reps", po::value(&common.reps)->default_value(0), "repetitions per case (0: the default)")
      ("json", po::value(&common.json), "write the records to this file (rank 0)")
      ("no-progress", "no progress lines");
  std::vector<std::string> rest;
  try {
    // argv[1] (the subcommand) takes the place of the program name, which the parser skips.
    auto parsed = po::command_line_parser(argc - 1, argv + 1).options(desc).allow_unregistered().run();
    po::variables_map vm;
    po::store(parsed, vm);
    po::notify(vm);
    common.progress = vm.count("no-progress") == 0;
    rest = po::collect_unrecognized(parsed.options, po::include_positional);
    if (vm.count("help")) {
      // The common options, then the subcommand's own (it prints them and throws HelpShown).
      std::cout << desc << "\n";
      rest.push_back("--help");
    }
    if (common.reps < 0) throw std::invalid_argument("--reps must be >= 0");
    std::shared_ptr<comm::Communicator> world = comm::make_world();
    bench::RecordFile out(bench::environment(world.get(), world->size()));
    const int rc = commands.at(sub)(common, rest, world, out);
    if (world->rank() == 0) {
      out.write(common.json);
      if (!common.json.empty())
        std::printf("wrote %zu records to %s\n", out.size(), common.json.c_str());
    }
    return rc;
  } catch (const bench::HelpShown&) {
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seqpar-bench %s: error: %s\n", sub.c_str(), e.what());
    return 2;
  }
}
