// The subcommands of seqpar-bench and what they share (main.cpp parses the command line).
#pragma once

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
};

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

}  // namespace seqpar::bench
