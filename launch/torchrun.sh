#!/usr/bin/env bash
# Runs seqpar-train under torchrun (torchrun starts the processes and hosts the rendezvous
# store; seqpar-train bootstraps NCCL from the torchrun environment). Needs a build with NCCL
# (CUDA machines); CPU-only builds use launch/mpirun.sh, because LibTorch ships no gloo headers
# for C++ programs (comm/include/seqpar/comm/communicator.h).
#
#   launch/torchrun.sh configs/single_gpu.ini                       # fresh run
#   launch/torchrun.sh configs/single_gpu.ini --resume latest       # continue the last run
#   NNODES=4 NODE_RANK=0 MASTER_ADDR=node0 launch/torchrun.sh configs/multi_node.ini
set -euo pipefail
cd "$(dirname "$0")/.."

config=${1:?usage: launch/torchrun.sh CONFIG.ini [--key value ...]}
shift

# SEQPAR_BUILD_DIR: the CMake build folder holding bin/seqpar-train (default: build).
build=${SEQPAR_BUILD_DIR:-build}
# NPROC_PER_NODE: processes on this node, one per GPU (default: GPUs seen by nvidia-smi, else 1).
nproc_per_node=${NPROC_PER_NODE:-$(nvidia-smi -L 2>/dev/null | wc -l | awk '{print ($1 > 0) ? $1 : 1}')}
# NNODES: nodes in the job (default 1). NODE_RANK: this node's index (default 0).
nnodes=${NNODES:-1}
node_rank=${NODE_RANK:-0}
# MASTER_ADDR / MASTER_PORT: where node 0's rendezvous store listens (default: localhost:29500).
master_addr=${MASTER_ADDR:-127.0.0.1}
master_port=${MASTER_PORT:-29500}
# OMP_NUM_THREADS: CPU threads per process for host-side work (default 1; torchrun sets the same).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# SEQPAR_COMM_TIMEOUT_MS: deadline of every blocking communication call (default: 10 minutes).
export SEQPAR_COMM_TIMEOUT_MS=${SEQPAR_COMM_TIMEOUT_MS:-600000}
# SEQPAR_COMM_BACKEND: force the communicator (nccl | mpi); unset lets seqpar pick NCCL on GPUs.

# --no-python: the entry point is a program, not a Python script. torchrun exports RANK,
# WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT and
# TORCHELASTIC_USE_AGENT_STORE to every process; seqpar's bootstrap reads them.
exec torchrun --no-python \
  --nnodes "$nnodes" --node-rank "$node_rank" --nproc-per-node "$nproc_per_node" \
  --master-addr "$master_addr" --master-port "$master_port" \
  "$build/bin/seqpar-train" --config "$config" "$@"
