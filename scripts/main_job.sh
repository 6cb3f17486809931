#!/usr/bin/env bash
# The main job (README.md): installs what is missing, builds, and runs the quickstart: 2 MPI
# ranks on this machine train the byte-level manifold-scan model on sequences of 131072 tokens
# split across them (configs/quickstart.ini), printing progress, validation loss and, at the
# end, the validation loss against the unigram (byte-frequency) baseline. Metrics go to
# runs/quickstart/metrics.jsonl, checkpoints to runs/quickstart/.
#
#   bash scripts/main_job.sh [--key value ...]     # overrides of configs/quickstart.ini
set -euo pipefail
cd "$(dirname "$0")/.."
# Only what the job runs: the library and the training program (the tests and benchmarks are
# the test command's business).
SEQPAR_BUILD_TARGETS="seqpar seqpar-train" bash scripts/build.sh
exec bash launch/mpirun.sh configs/quickstart.ini "$@"
