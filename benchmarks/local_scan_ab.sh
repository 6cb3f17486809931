#!/usr/bin/env bash
# A/B of the CPU scan kernels on a noisy machine: runs `seqpar-bench local_scan` of a base build
# and of this tree's build alternately, ROUNDS times each, and prints per shape the median
# forward / backward GB/s and % of triad (triad measured in the same run) of both.
#
# Shared VMs move memory bandwidth by tens of percent between runs (docs/cpu_kernels.md), so a
# single run of each build compares two different machines; alternating and taking medians
# compares like with like.
#
#   git worktree add /tmp/seqpar-base <rev> && (cd /tmp/seqpar-base && bash scripts/build.sh)
#   benchmarks/local_scan_ab.sh /tmp/seqpar-base/build 4 --threads 2 --bd 1 16 256
#
# BASE_BUILD_DIR "-" runs this tree's build alone (medians of ROUNDS runs). SEQPAR_CPU_CAPABILITY
# applies to both builds. RAW=file keeps the raw rows.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 BASE_BUILD_DIR ROUNDS [seqpar-bench local_scan options]" >&2
  exit 2
fi
base=$1 rounds=$2
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
new_bin=$here/build/bin/seqpar-bench
builds="base new"
if [ "$base" = - ]; then
  builds=new base_bin=$new_bin
else
  base_bin=$base/bin/seqpar-bench
fi
for b in "$new_bin" "$base_bin"; do
  [ -x "$b" ] || { echo "$0: no seqpar-bench at $b (build it first)" >&2; exit 2; }
done
raw=${RAW:-$(mktemp)}
: > "$raw"
for ((i = 1; i <= rounds; i++)); do
  for which in $builds; do
    bin=$new_bin
    [ $which = base ] && bin=$base_bin
    "$bin" local_scan --reps 3 --naive-steps 16 --no-progress "$@" 2>&1 |
      grep -E '^[0-9]+ +[0-9]+ +[0-9]+ +(chan|time) ' | sed "s/^/$which /" >> "$raw"
  done
done
python3 - "$raw" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    f = line.split()
    # which threads B*D T layout | fwd GB/s %triad op | bwd GB/s %triad op | naive log | triad
    # ... | triad | summary GB/s %triad (newer builds append the summary pass)
    summary = float(f[19]) if len(f) > 20 else float("nan")
    rows[(f[1], f[2], f[3], f[4])][f[0]].append(
        (float(f[6]), float(f[7].rstrip('%')), float(f[10]), float(f[11].rstrip('%')), summary))
print("median of %s rounds: forward GB/s (%% triad) / backward GB/s (%% triad) / summary GB/s" %
      min(len(v) for r in rows.values() for v in r.values()))
builds = [b for b in ("base", "new") if any(b in r for r in rows.values())]
print(("%-7s %-5s %-9s %-4s" + " | %-35s" * len(builds)) % (("threads", "B*D", "T", "lay") + tuple(builds)))
for key, r in rows.items():
    def cell(v):
        m = [statistics.median(x[i] for x in v) for i in range(5)]
        return "%5.1f (%3.0f%%) / %5.1f (%3.0f%%) / %5.1f" % tuple(m)
    print(("%-7s %-5s %-9s %-4s" + " | %s" * len(builds)) % (key + tuple(cell(r[b]) for b in builds)))
EOF
