#!/usr/bin/env bash
# Runs seqpar-train under Open MPI on this machine (or on the hosts of $SEQPAR_HOSTFILE).
#
#   launch/mpirun.sh configs/quickstart.ini [--key value ...]          # fresh run
#   launch/mpirun.sh configs/quickstart.ini --resume latest            # continue the last run
#   launch/mpirun.sh configs/quickstart.ini --mode generate --resume latest --prompt "The "
#
# The number of ranks is the config's `sp` times $SEQPAR_DP (data-parallel replicas); the
# ranks of one sp group split every sequence between them. Extra arguments override the config.
set -euo pipefail
cd "$(dirname "$0")/.."

config=${1:?usage: launch/mpirun.sh CONFIG.ini [--key value ...]}
shift

# Cores of this machine (GNU nproc would otherwise honour an OMP_NUM_THREADS already set).
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)

# SEQPAR_BUILD_DIR: the CMake build folder holding bin/seqpar-train (default: build).
build=${SEQPAR_BUILD_DIR:-build}
# SEQPAR_DP: data-parallel replicas (default 1); ranks = sp * SEQPAR_DP.
dp=${SEQPAR_DP:-1}
# SEQPAR_NP: total ranks, overriding sp * SEQPAR_DP.
sp=$(sed -n 's/^[[:space:]]*sp[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$config" | tail -1)
np=${SEQPAR_NP:-$(( ${sp:-1} > 0 ? ${sp:-1} * dp : dp ))}
# SEQPAR_HOSTFILE: an Open MPI hostfile for multi-node runs (default: this machine only).
hostfile_args=()
if [[ -n "${SEQPAR_HOSTFILE:-}" ]]; then hostfile_args=(--hostfile "$SEQPAR_HOSTFILE"); fi

# OMP_NUM_THREADS: intra-op threads per rank. One rank per core is the default so that ranks
# do not fight over cores (the config's `threads` key, when non-zero, wins inside the program).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores / np > 0 ? cores / np : 1 ))}
# SEQPAR_COMM_TIMEOUT_MS: deadline of every blocking communication call; a dead peer makes
# the job fail with an error naming the call instead of hanging (default here: 10 minutes).
export SEQPAR_COMM_TIMEOUT_MS=${SEQPAR_COMM_TIMEOUT_MS:-600000}
# SEQPAR_SP_ALGO: passed on when set; replaces sp_algo = auto (docs/sequence_parallel.md,
# "Choosing the exchange").

mpi_args=(-np "$np" --bind-to none -x OMP_NUM_THREADS -x SEQPAR_COMM_TIMEOUT_MS)
[[ -n "${SEQPAR_SP_ALGO:-}" ]] && mpi_args+=(-x SEQPAR_SP_ALGO)
# Open MPI refuses to run as root without --allow-run-as-root (containers often are root) and
# more ranks than cores without --oversubscribe.
[[ $(id -u) -eq 0 ]] && mpi_args+=(--allow-run-as-root)
(( np > cores )) && mpi_args+=(--oversubscribe)

# Ranks write through mpirun's pseudo-terminals, so they cannot tell whether the user's
# stdout is a terminal: the launcher decides, and turns the progress bar off for logs/pipes
# unless the command line sets it (the program takes each option once).
extra=()
user_sets_bar=false
for arg in "$@"; do [[ $arg == --progress_bar || $arg == --progress_bar=* ]] && user_sets_bar=true; done
[[ -t 1 ]] || $user_sets_bar || extra+=(--progress_bar false)

exec mpirun "${mpi_args[@]}" "${hostfile_args[@]}" \
  "$build/bin/seqpar-train" --config "$config" "${extra[@]}" "$@"
