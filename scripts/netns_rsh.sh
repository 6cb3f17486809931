#!/usr/bin/env bash
# An "rsh/ssh" for Open MPI that reaches the hosts emulated by scripts/emulate_hosts.sh:
#
#   mpirun --mca plm_rsh_agent "$PWD/scripts/netns_rsh.sh" ...
#
# Open MPI calls the agent as `agent [options] HOST COMMAND...`. Leading options (words starting
# with "-") are skipped; HOST must be an emulated address 10.77.0.X (1 <= X <= 253), which is
# mapped to namespace seqpar-h(X-1). Like ssh, the remaining words are joined with spaces and run
# by a shell (/bin/sh -c) there: Open MPI sends shell syntax such as
# "PATH=...; export PATH; orted ...". The command keeps this process's environment, user and
# working directory; only the network namespace (and the /sys view `ip netns exec` mounts) differ.
# Needs root (ip netns exec), as does everything in emulate_hosts.sh.
set -euo pipefail

PROG=$(basename "$0")
while (( $# )) && [[ $1 == -* ]]; do
    shift
done
(( $# >= 2 )) || { echo "$PROG: usage: $PROG [options] HOST COMMAND... (HOST = 10.77.0.X)" >&2; exit 255; }
host=$1
shift
if [[ $host =~ ^10\.77\.0\.([0-9]{1,3})$ ]] && (( BASH_REMATCH[1] >= 1 && BASH_REMATCH[1] <= 253 )); then
    ns=seqpar-h$(( BASH_REMATCH[1] - 1 ))
else
    echo "$PROG: host '$host' is not an emulated host address 10.77.0.X (X = 1..253)" >&2
    exit 255
fi
if ! ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns"; then
    echo "$PROG: host $host: namespace $ns does not exist (scripts/emulate_hosts.sh up --hosts N)" >&2
    exit 255
fi
# 255 is what ssh returns for its own failures; Open MPI reports it as a launch failure.
exec ip netns exec "$ns" /bin/sh -c "$*"
