// The subcommands of seqpar-bench and what they share (main.cpp parses the command line).
#pragma once

#include <boost/program_options.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "record.h"

namespace seqpar::comm {
class Communicator;
}

namespace seqpar::bench {

struct CommonOptions {
  bool quick = false;     // a smoke-test subset that finishes in about a minute
  int reps = 0;           // repetitions per case (0: the subcommand's default)
  bool progress = true;   // a line per finished case with the time left
  std::string json;       // write the records here (rank 0)

  // --reps if given, else the subcommand's default for quick or full runs.
  int reps_or(int full, int quick_default) const {
    return reps > 0 ? reps : quick ? quick_default : full;
  }
};

// Thrown by parse_options after it printed a subcommand's options for --help.
struct HelpShown {};

// Parses a subcommand's own options (what main.cpp left in `args`); throws on unknown ones.
// With --help (or -h) in args it prints `desc` and throws HelpShown.
boost::program_options::variables_map parse_options(
    const boost::program_options::options_description& desc, const std::vector<std::string>& args);

// Times fn `reps` times after two warm-up calls; each repetition starts after a barrier and
// counts the slowest rank's time (every rank gets the same summary).
Timing time_slowest(comm::Communicator& world, int reps, const std::function<void()>& fn);

// Each subcommand parses its own options from `args` and adds its records to `out`.
using Subcommand = int (*)(const CommonOptions& common, const std::vector<std::string>& args,
                           std::shared_ptr<comm::Communicator> world, RecordFile& out);
int run_exchange(const CommonOptions& common, const std::vector<std::string>& args,
                 std::shared_ptr<comm::Communicator> world, RecordFile& out);
int run_sp_scan(const CommonOptions& common, const std::vector<std::string>& args,
                std::shared_ptr<comm::Communicator> world, RecordFile& out);
int run_psm(const CommonOptions& common, const std::vector<std::string>& args,
            std::shared_ptr<comm::Communicator> world, RecordFile& out);
int run_local_scan(const CommonOptions& common, const std::vector<std::string>& args,
                   std::shared_ptr<comm::Communicator> world, RecordFile& out);
int run_block_scan(const CommonOptions& common, const std::vector<std::string>& args,
                   std::shared_ptr<comm::Communicator> world, RecordFile& out);
int run_train_step(const CommonOptions& common, const std::vector<std::string>& args,
                   std::shared_ptr<comm::Communicator> world, RecordFile& out);

}  // namespace seqpar::bench
