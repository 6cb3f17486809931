"""A/B of the chunked matrix-state ops between two builds of libseqpar on a noisy machine:
runs `matrix_state_bench.py --chunked-only` with SEQPAR_LIBRARY set to each library in turn,
ROUNDS times per head count, alternating, and prints the median forward + backward time of
each, wall and CPU time of all threads (shared VMs move by tens of percent between runs, so only
alternated medians compare; the CPU time is the work done, which load moves less).

    python3 benchmarks/matrix_state_ab.py BASE_LIB NEW_LIB [--rounds 3] [--heads 1 2 8]
        [--threads 2] [--log2-t 16] [--reps 3] [--json out]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run_once(lib, heads, args):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = dict(os.environ, SEQPAR_LIBRARY=lib, OMP_NUM_THREADS=str(args.threads))
        subprocess.run([sys.executable, os.path.join(HERE, "matrix_state_bench.py"),
                        "--chunked-only", "--heads", str(heads), "--log2-t", str(args.log2_t),
                        "--reps", str(args.reps), "--json", out.name],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        with open(out.name) as f:
            rec = json.load(f)
    assert rec["threads"] == args.threads, rec["threads"]
    return {r["model"]: (r["seconds"], r["cpu_seconds"]) for r in rec["rows"]}, rec["cpu_target"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("base")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--heads", type=int, nargs="+", default=[1, 2, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log2-t", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    raw = {}  # (heads, build, model) -> [seconds]
    target = None
    for rnd in range(args.rounds):
        for heads in args.heads:
            for build, lib in (("base", args.base), ("new", args.new)) if rnd % 2 == 0 else \
                    (("new", args.new), ("base", args.base)):
                times, target = run_once(lib, heads, args)
                for model, t in times.items():
                    raw.setdefault(f"{heads}/{build}/{model}", []).append(t)
                print(f"# round {rnd} H={heads} {build}: " + "  ".join(
                    f"{m} {t[0] * 1e3:.0f} ms (CPU {t[1] * 1e3:.0f} ms)" for m, t in times.items()),
                    flush=True)
    print(f"# T = 2^{args.log2_t}, B = 1, K = V = 64, chunk 64, float32, forward + backward, "
          f"{args.threads} threads, cpu target {target}, median of {args.rounds} alternated runs "
          f"(each the median of {args.reps})")
    print(f"{'H':>3} {'model':12s} {'base ms':>9} {'new ms':>9} {'speedup':>8} "
          f"{'base CPU ms':>12} {'new CPU ms':>11} {'CPU ratio':>10}")
    for heads in args.heads:
        for model in ("gla", "gated_delta"):
            b = [statistics.median(x) for x in zip(*raw[f"{heads}/base/{model}"])]
            n = [statistics.median(x) for x in zip(*raw[f"{heads}/new/{model}"])]
            print(f"{heads:3d} {model:12s} {b[0] * 1e3:9.1f} {n[0] * 1e3:9.1f} {b[0] / n[0]:7.2f}x "
                  f"{b[1] * 1e3:12.1f} {n[1] * 1e3:11.1f} {n[1] / b[1]:9.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "cpu_target": target, "seconds": raw}, f, indent=1)


if __name__ == "__main__":
    main()
