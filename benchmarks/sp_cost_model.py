#!/usr/bin/env python3
"""Fits the alpha-beta model of the sequence-parallel exchange and predicts it for P up to 1024.

Input: JSON records of `seqpar-bench exchange` (schema seqpar-bench/1; the diagonal summaries
measured without injected latency are fitted) and `seqpar-bench sp_scan`, or the JSON files of
the older sp_exchange_bench kept in benchmarks/sp_results/. For each algorithm it fits
    tree, exscan:  t = rounds * alpha + rounds * m * beta          rounds = ceil(log2 P)
    allgather:     t = rounds * alpha + (P - 1) * m * beta
by least squares on all measured (P, m), and reports alpha, beta and the relative error.

Prediction (stated parameters, see PLATFORMS): an H100 node has 8 GPUs on NVLink; ranks in
different nodes talk over InfiniBand. Round k of the tree exchanges with rank q - 2^k, so the
first log2(8) = 3 rounds stay inside a node and the others cross nodes. Each round also composes
two summaries on the GPU (3 m bytes of HBM traffic plus a kernel launch when the rounds are
issued one at a time from the host, as the current NcclCommunicator does; none when the whole
tree is enqueued on the comm stream). The local scan of T_local x D float32 moves 12 bytes per
element at the streaming bandwidth; the summary pass 8 bytes per element. The cross-rank overhead
is the exchange time divided by the local scan time.

Usage:
    scripts/bench_sweep.sh --only exchange --latencies 0      # runs/bench_sweep/exchange_d0_p*.json
    python3 benchmarks/sp_cost_model.py runs/bench_sweep/exchange_d0_p*.json \
        --out sp_cost_model.json --plot docs/sequence_parallel.png
"""
import argparse
import os
import json
import math

import numpy as np

# Stated parameters of the prediction. alpha: per message (NCCL p2p small-message latency),
# bw: per-direction bandwidth a single p2p stream reaches, hbm: streaming (copy) bandwidth.
PLATFORMS = {
    "nvlink": {"alpha_s": 6e-6, "bw_Bps": 300e9},       # H100 SXM, NVLink 4 through NVSwitch
    "infiniband": {"alpha_s": 10e-6, "bw_Bps": 45e9},   # NDR 400 Gb/s per GPU, GPUDirect RDMA
    "hbm_Bps": 3.0e12,                                  # H100 SXM copy bandwidth (3.35 TB/s peak)
    "gpus_per_node": 8,
    "launch_s": 3e-6,                                   # one kernel launch + host round trip
}
TARGET = {"T_local": 2 ** 16, "channels": 4096, "batch": 1, "elem_bytes": 4}


def rounds(P):
    return math.ceil(math.log2(P)) if P > 1 else 0


def fit(points):
    """points: (P, m, t, algo). Returns alpha, beta, max relative error."""
    rows, ts = [], []
    for P, m, t, algo in points:
        r = rounds(P)
        moved = (P - 1) * m if algo == "allgather" else r * m
        rows.append([r, moved])
        ts.append(t)
    X, y = np.array(rows, float), np.array(ts, float)
    # Relative least squares: every message size counts, not only the largest.
    w = 1.0 / y
    coef, *_ = np.linalg.lstsq(X * w[:, None], y * w, rcond=None)
    alpha, beta = max(coef[0], 0.0), max(coef[1], 1e-15)
    pred = X @ np.array([alpha, beta])
    return alpha, beta, float(np.max(np.abs(pred - y) / y))


def link(d):
    """Link used between ranks at distance d (consecutive ranks fill a node first)."""
    return PLATFORMS["nvlink"] if d < PLATFORMS["gpus_per_node"] else PLATFORMS["infiniband"]


def predict_tree(P, m, streamed):
    t, d = 0.0, 1
    compose = 3 * m / PLATFORMS["hbm_Bps"] + (0.0 if streamed else PLATFORMS["launch_s"])
    while d < P:
        l = link(d)
        t += l["alpha_s"] + m / l["bw_Bps"] + compose
        d *= 2
    return t


def predict_allgather(P, m):
    """Optimistic bound for a log-depth all-gather: ceil(log2 P) latencies, (P-1) m received
    over the slowest link, and the fold of up to P-1 predecessors."""
    l = link(P - 1) if P > 1 else PLATFORMS["nvlink"]
    return rounds(P) * l["alpha_s"] + (P - 1) * m / l["bw_Bps"] + (P - 1) * 3 * m / PLATFORMS["hbm_Bps"]


FITTED = ("tree", "exscan", "allgather")


def load(path, stat="median"):
    """(backend, [(P, m_bytes, seconds, algo)], [sp_scan runs]) of one result file; `stat` picks
    the repetitions' median or min of seqpar-bench records (the older files hold one figure)."""
    with open(path) as f:
        doc = json.load(f)
    if str(doc.get("schema", "")).startswith("seqpar-bench/"):
        backend, points, sp_runs = None, [], []
        for r in doc["records"]:
            env, c = r["env"], r["case"]
            backend = env["backend"]
            if (env.get("emulation") or {}).get("latency_us", 0):
                continue  # injected latency: not this backend's own alpha
            # The algorithms whose cost the fit's formulas describe (ring and Blelloch are
            # predicted by comm/src/cost_model.cpp from the tree's alpha and beta).
            if r["bench"] == "exchange" and c["summary"] == "diagonal" and c["algo"] in FITTED:
                points.append((c["P"], c["bytes"], r[stat], c["algo"]))
            elif r["bench"] == "sp_scan":
                sp_runs.append({"P": c["P"], "T_local": c["tokens_per_rank"],
                                "channels": c["channels"], "sp_scan_s": r["median"]})
        return backend, points, sp_runs
    points = [(doc["P"], e["m_bytes"], e["time_s"], e["algo"]) for e in doc["exchange"]]
    return doc["backend"], points, [{"P": doc["P"], **doc["sp_scan"]}]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+")
    ap.add_argument("--out", default="sp_cost_model.json")
    ap.add_argument("--plot", default=None)
    ap.add_argument("--fit-max-p", type=int, default=os.cpu_count(),
                    help="fit only runs with P <= this (oversubscribed runs time the scheduler)")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="fit the repetitions' median (default) or minimum: the minimum ignores "
                         "repetitions the host delayed (seqpar-bench records only)")
    args = ap.parse_args()

    points, sp_runs, backend = {}, [], None
    for path in args.results:
        backend, file_points, file_sp = load(path, args.stat)
        for p in file_points:
            if 1 < p[0] <= args.fit_max_p:
                points.setdefault(p[3], []).append(p)
        sp_runs += file_sp

    fitted = {}
    print(f"# alpha-beta fit of the measured exchange ({backend})")
    print(f"{'algo':10s} {'alpha_us':>10s} {'beta_GBps':>10s} {'max_rel_err':>12s}")
    for algo, pts in sorted(points.items()):
        alpha, beta, err = fit(pts)
        fitted[algo] = {"alpha_s": alpha, "beta_s_per_byte": beta, "max_rel_err": err, "points": len(pts)}
        print(f"{algo:10s} {alpha * 1e6:10.2f} {1e-9 / beta:10.3f} {err:12.2f}")

    m = 2 * TARGET["channels"] * TARGET["batch"] * TARGET["elem_bytes"]
    elems = TARGET["T_local"] * TARGET["channels"] * TARGET["batch"]
    local_s = 12 * elems / PLATFORMS["hbm_Bps"]
    summary_s = 8 * elems / PLATFORMS["hbm_Bps"]
    table = []
    print(f"\n# prediction: T_local={TARGET['T_local']}, channels={TARGET['channels']}, float32, "
          f"m={m} B; local scan {local_s * 1e3:.3f} ms, summary pass {summary_s * 1e3:.3f} ms")
    print(f"{'P':>6s} {'tree_us':>9s} {'tree_streamed_us':>17s} {'allgather_us':>13s} "
          f"{'overhead_tree':>14s} {'overhead_streamed':>18s}")
    P = 2
    while P <= 1024:
        tree = predict_tree(P, m, streamed=False)
        streamed = predict_tree(P, m, streamed=True)
        gather = predict_allgather(P, m)
        row = {"P": P, "tree_s": tree, "tree_streamed_s": streamed, "allgather_s": gather,
               "chosen": "tree" if min(tree, streamed) <= gather else "allgather",
               "overhead_tree": tree / local_s, "overhead_tree_streamed": streamed / local_s}
        table.append(row)
        print(f"{P:6d} {tree * 1e6:9.1f} {streamed * 1e6:17.1f} {gather * 1e6:13.1f} "
              f"{100 * tree / local_s:13.1f}% {100 * streamed / local_s:17.1f}%")
        P *= 2

    out = {"backend_measured": backend, "fit": fitted, "platforms": PLATFORMS, "target": TARGET,
           "local_scan_s": local_s, "summary_s": summary_s, "prediction": table,
           "measured_sp_scan": sp_runs}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for algo, pts in sorted(points.items()):
            for P in sorted({p[0] for p in pts}):
                sel = sorted((p[1], p[2]) for p in pts if p[0] == P)
                axes[0].loglog([s[0] for s in sel], [s[1] * 1e6 for s in sel], marker="o",
                               label=f"{algo} P={P}")
        axes[0].set_xlabel("summary bytes per rank m")
        axes[0].set_ylabel("exchange time (us, median)")
        axes[0].set_title(f"measured ({backend}, fitted runs: P <= {args.fit_max_p})")
        axes[0].legend(fontsize=6, ncol=2)
        Ps = [r["P"] for r in table]
        axes[1].semilogx(Ps, [100 * r["tree_s"] / local_s for r in table], marker="o", label="tree, host-issued rounds")
        axes[1].semilogx(Ps, [100 * r["tree_streamed_s"] / local_s for r in table], marker="s", label="tree, streamed rounds")
        axes[1].semilogx(Ps, [100 * r["allgather_s"] / local_s for r in table], marker="^", label="all-gather (bound)")
        axes[1].axhline(10, color="gray", ls="--", lw=1)
        axes[1].set_ylim(0, 40)
        axes[1].set_xlabel("P (8 GPUs per node: NVLink inside, InfiniBand across)")
        axes[1].set_ylabel("exchange / local scan time (%)")
        axes[1].set_title("predicted, H100, 2^16 tokens x 4096 ch per rank")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
