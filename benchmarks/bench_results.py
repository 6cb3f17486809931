#!/usr/bin/env python3
"""Checks, merges, tabulates, plots and compares benchmark results in the "seqpar-bench/1" format.

Every seqpar benchmark (local scan, cross-rank exchange, sp scan, training step) is meant to
write the same kind of file, {"schema": "seqpar-bench/1", "records": [...]}, one record per
measured case; docs/benchmarks.md defines the fields. This tool works on those files only and
needs nothing beyond the standard library (matplotlib for --plots, imported only then):

    bench_results.py validate FILE...                       one line per problem; exit 1 if any
    bench_results.py merge FILE... [--where KEY=VALUE ...] [--markdown OUT.md] [--plots DIR]
    bench_results.py compare BASE.json NEW.json [--threshold 0.10] [--metric median]

A case's identity, used by merge (a later file replaces an earlier file's record) and compare, is
(bench, the case's items, env.world_size, env.sp_size, the emulated latency and bandwidth). The
commit, date, host and versions are deliberately not part of it: comparing the same case across
commits or machines is what compare is for.

Exit status: 0 fine; 1 validation problems (validate) or a regression (compare); 2 bad input
(missing or unreadable file, not JSON, not a seqpar-bench/1 file, bad arguments), reported as one
line on stderr naming the file.
"""
import argparse
import json
import math
import os
import sys
from datetime import datetime

SCHEMA = "seqpar-bench/1"
BENCHES = ("local_scan", "block_scan", "exchange", "sp_scan", "train_step", "psm_inference", "psm_train")
METRICS = ("seconds",)
RECORD_FIELDS = ("bench", "case", "metric", "median", "min", "max", "repeats", "predicted",
                 "bytes_moved", "roofline_gbps", "env")
ENV_FIELDS = ("commit", "build", "device", "host", "date", "world_size", "sp_size", "versions",
              "emulation")
# Optional: bench-specific figures beside the timing ("extra", an object) and the
# communicator backend ("env.backend").
RECORD_OPTIONAL = ("extra",)
ENV_OPTIONAL = ("backend",)
VERSION_FIELDS = ("libtorch", "cuda", "nccl", "mpi")
EMULATION_FIELDS = ("hosts", "latency_us", "bandwidth_gbps", "latency_kind", "bandwidth_kind")
PROG = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "bench_results.py"


class InputError(Exception):
    """Bad input the user can fix: reported as one line, exit 2."""


# ---------------------------------------------------------------------------------------------
# Validation

def _type_name(v):
    return "null" if v is None else type(v).__name__


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_number(problems, path, v, *, nullable=False, positive=False):
    """Appends a problem unless v is a finite number >= 0 (> 0 when positive), or null if allowed."""
    if v is None and nullable:
        return
    if not _is_number(v):
        want = "number or null" if nullable else "number"
        problems.append(f"{path}: expected {want}, got {_type_name(v)} {v!r}")
    elif not math.isfinite(v):
        problems.append(f"{path}: expected a finite number, got {v!r}")
    elif v < 0 or (positive and v == 0):
        problems.append(f"{path}: expected a number {'> 0' if positive else '>= 0'}, got {v!r}")


def _check_int(problems, path, v, minimum):
    if not _is_int(v):
        problems.append(f"{path}: expected integer, got {_type_name(v)} {v!r}")
    elif v < minimum:
        problems.append(f"{path}: expected an integer >= {minimum}, got {v!r}")


def _check_str(problems, path, v, *, nullable=False):
    if v is None and nullable:
        return
    if not isinstance(v, str):
        want = "string or null" if nullable else "string"
        problems.append(f"{path}: expected {want}, got {_type_name(v)} {v!r}")


def _check_fields(problems, path, obj, fields, optional=()):
    """Missing and unknown keys of a dict; returns False when obj is not a dict."""
    prefix = f"{path}." if path else ""
    if not isinstance(obj, dict):
        problems.append(f"{path or 'record'}: expected object, got {_type_name(obj)}")
        return False
    for f in fields:
        if f not in obj:
            problems.append(f"{prefix}{f}: missing")
    for f in obj:
        if f not in fields and f not in optional:
            problems.append(f"{prefix}{f}: unknown field (expected one of "
                            f"{', '.join(fields + tuple(optional))})")
    return True


def record_problems(rec):
    """Problems of one record, each as 'field.path: what is wrong'."""
    p = []
    if not _check_fields(p, "", rec, RECORD_FIELDS, RECORD_OPTIONAL):
        return p
    if "extra" in rec and not isinstance(rec["extra"], dict):
        p.append(f"extra: expected object, got {_type_name(rec['extra'])}")
    if "bench" in rec and rec["bench"] not in BENCHES:
        p.append(f"bench: expected one of {', '.join(BENCHES)}, got {rec['bench']!r}")
    if "case" in rec:
        case = rec["case"]
        if not isinstance(case, dict):
            p.append(f"case: expected object, got {_type_name(case)}")
        else:
            for k, v in case.items():
                if not (v is None or isinstance(v, (str, int, float, bool))):
                    p.append(f"case.{k}: expected str, int, float, bool or null, got {_type_name(v)}")
                elif isinstance(v, float) and not math.isfinite(v):
                    p.append(f"case.{k}: expected a finite number, got {v!r}")
            if "sweep" in case and case["sweep"] not in ("weak", "strong", None):
                p.append(f"case.sweep: expected \"weak\", \"strong\" or null, got {case['sweep']!r}")
            if "P" in case:
                _check_int(p, "case.P", case["P"], 1)
    if "metric" in rec and rec["metric"] not in METRICS:
        p.append(f"metric: expected one of {', '.join(METRICS)}, got {rec['metric']!r}")
    for f in ("median", "min", "max"):
        if f in rec:
            _check_number(p, f, rec[f])
    if all(_is_number(rec.get(f)) for f in ("median", "min", "max")):
        if not rec["min"] <= rec["median"] <= rec["max"]:
            p.append(f"median: expected min <= median <= max, got {rec['min']!r}, "
                     f"{rec['median']!r}, {rec['max']!r}")
    if "repeats" in rec:
        _check_int(p, "repeats", rec["repeats"], 1)
    if "predicted" in rec:
        _check_number(p, "predicted", rec["predicted"], nullable=True)
    if "bytes_moved" in rec:
        _check_number(p, "bytes_moved", rec["bytes_moved"], nullable=True)
    if "roofline_gbps" in rec:
        _check_number(p, "roofline_gbps", rec["roofline_gbps"], nullable=True, positive=True)
    if "env" in rec:
        p.extend(_env_problems(rec["env"]))
    return p


def _env_problems(env):
    p = []
    if not _check_fields(p, "env", env, ENV_FIELDS, ENV_OPTIONAL):
        return p
    for f in ("commit", "device", "host", "backend"):
        if f in env:
            _check_str(p, f"env.{f}", env[f])
    if "build" in env:
        b = env["build"]
        if not isinstance(b, dict):
            p.append(f"env.build: expected object of strings, got {_type_name(b)}")
        else:
            for k, v in b.items():
                _check_str(p, f"env.build.{k}", v)
    if "date" in env:
        d = env["date"]
        if not isinstance(d, str):
            p.append(f"env.date: expected ISO 8601 string, got {_type_name(d)} {d!r}")
        else:
            try:
                datetime.fromisoformat(d)
            except ValueError:
                p.append(f"env.date: expected ISO 8601 date-time (2026-11-27T10:00:00+00:00), got {d!r}")
    for f in ("world_size", "sp_size"):
        if f in env:
            _check_int(p, f"env.{f}", env[f], 1)
    if _is_int(env.get("world_size")) and _is_int(env.get("sp_size")) and env["sp_size"] > env["world_size"]:
        p.append(f"env.sp_size: expected <= env.world_size ({env['world_size']}), got {env['sp_size']}")
    if "versions" in env and _check_fields(p, "env.versions", env["versions"], VERSION_FIELDS):
        v = env["versions"]
        if "libtorch" in v:
            _check_str(p, "env.versions.libtorch", v["libtorch"])
        for f in ("cuda", "nccl", "mpi"):
            if f in v:
                _check_str(p, f"env.versions.{f}", v[f], nullable=True)
    em = env.get("emulation")
    if em is not None and _check_fields(p, "env.emulation", em, EMULATION_FIELDS):
        if "hosts" in em:
            # 0: one machine, latency injected only (no emulated hosts)
            _check_int(p, "env.emulation.hosts", em["hosts"], 0)
        if "latency_us" in em:
            _check_number(p, "env.emulation.latency_us", em["latency_us"])
        if "bandwidth_gbps" in em:
            _check_number(p, "env.emulation.bandwidth_gbps", em["bandwidth_gbps"], nullable=True,
                          positive=True)
        if "latency_kind" in em and em["latency_kind"] != "injected":
            p.append(f"env.emulation.latency_kind: expected \"injected\", got {em['latency_kind']!r}")
        if "bandwidth_kind" in em and em["bandwidth_kind"] not in ("tbf", "real"):
            p.append(f"env.emulation.bandwidth_kind: expected \"tbf\" or \"real\", got "
                     f"{em['bandwidth_kind']!r}")
    return p


def file_problems(doc):
    """Problems of a parsed file: (record index or None, 'field: what')."""
    if not isinstance(doc, dict):
        return [(None, f"top level: expected object with \"schema\" and \"records\", got {_type_name(doc)}")]
    out = []
    if "schema" not in doc:
        out.append((None, f"schema: missing (expected \"{SCHEMA}\")"))
    elif doc["schema"] != SCHEMA:
        out.append((None, f"schema: expected \"{SCHEMA}\", got {doc['schema']!r}"))
    for k in doc:
        if k not in ("schema", "records"):
            out.append((None, f"{k}: unknown top-level field (expected schema, records)"))
    recs = doc.get("records")
    if "records" not in doc:
        out.append((None, "records: missing"))
    elif not isinstance(recs, list):
        out.append((None, f"records: expected array, got {_type_name(recs)}"))
    else:
        seen = {}
        for i, rec in enumerate(recs):
            probs = record_problems(rec)
            out.extend((i, m) for m in probs)
            if not probs:
                key = identity(rec)
                if key in seen:
                    out.append((i, f"case: same case identity as record {seen[key]} "
                                   f"({describe(rec)}); one record per case"))
                else:
                    seen[key] = i
    return out


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file")
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a {SCHEMA} JSON file")
    except PermissionError:
        raise InputError(f"{path}: permission denied")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})")
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON: line {e.lineno} column {e.colno}: {e.msg}")


def load_records(path):
    """Records of a valid file; InputError (one line naming the file) otherwise."""
    doc = read_json(path)
    probs = file_problems(doc)
    if probs:
        idx, msg = probs[0]
        where = "" if idx is None else f"record {idx}: "
        more = f" (and {len(probs) - 1} more; run '{PROG} validate {path}')" if len(probs) > 1 else ""
        raise InputError(f"{path}: not a valid {SCHEMA} file: {where}{msg}{more}")
    return doc["records"]


# ---------------------------------------------------------------------------------------------
# Identity and formatting

def _emulation_key(env):
    em = env.get("emulation")
    return None if em is None else (em["latency_us"], em["bandwidth_gbps"])


def identity(rec):
    env = rec["env"]
    return (rec["bench"], tuple(sorted(rec["case"].items())), env["world_size"], env["sp_size"],
            _emulation_key(env))


def emulation_label(env, hosts=True):
    """'4 hosts, +50 us, 1 Gbit/s'; without hosts for curves over P (the host count follows P)."""
    em = env.get("emulation")
    if em is None:
        return ""
    bw = "unlimited" if em["bandwidth_gbps"] is None else f"{em['bandwidth_gbps']:g} Gbit/s"
    return (f"{em['hosts']} hosts, " if hosts else "emulated: ") + f"+{em['latency_us']:g} us, {bw}"


def _colors(plt, n):
    """n distinguishable colours: the default cycle, tab20 beyond 10 curves."""
    if n <= 10:
        return plt.rcParams["axes.prop_cycle"].by_key()["color"]
    cmap = plt.get_cmap("tab20")
    return [cmap(i % 20) for i in range(n)]


def _fmt_value(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


def describe(rec):
    """One-line description of a case identity."""
    parts = [rec["bench"]] + [f"{k}={v}" for k, v in sorted(rec["case"].items())]
    env = rec["env"]
    parts.append(f"world={env['world_size']}")
    if env["sp_size"] != env["world_size"]:
        parts.append(f"sp={env['sp_size']}")
    em = emulation_label(env)
    if em:
        parts.append(f"[{em}]")
    return " ".join(parts)


def fmt_seconds(t):
    if t is None:
        return ""
    a = abs(t)
    if a == 0:
        return "0 s"
    if a < 1e-3:
        return f"{t * 1e6:.1f} us"
    if a < 1:
        return f"{t * 1e3:.3f} ms"
    return f"{t:.3f} s"


def ranks_of(rec):
    """P of a record: case P if given, else the sequence-parallel group size."""
    P = rec["case"].get("P")
    return P if _is_int(P) else rec["env"]["sp_size"]


def _sort_value(v):
    if _is_number(v):
        return (0, v, "")
    return (1, 0, "" if v is None else str(v))


# ---------------------------------------------------------------------------------------------
# validate

def cmd_validate(args):
    bad = unreadable = False
    for path in args.files:
        try:
            doc = read_json(path)
        except InputError as e:   # missing, unreadable, not JSON: exit 2 after the other files
            print(f"{PROG}: {e}", file=sys.stderr)
            unreadable = True
            continue
        probs = file_problems(doc)
        for idx, msg in probs:
            where = "" if idx is None else f"record {idx}: "
            print(f"{path}: {where}{msg}")
        if probs:
            bad = True
        else:
            print(f"{path}: ok ({len(doc['records'])} records, {SCHEMA})")
    return 2 if unreadable else 1 if bad else 0


# ---------------------------------------------------------------------------------------------
# merge

def merge_files(paths):
    merged, replaced = {}, 0
    for path in paths:
        for rec in load_records(path):
            key = identity(rec)
            if key in merged:
                replaced += 1
                del merged[key]   # re-insert: the later file's record, in its order
            merged[key] = rec
    return list(merged.values()), replaced


def markdown_tables(records):
    lines = []
    for bench in BENCHES:
        recs = [r for r in records if r["bench"] == bench]
        if not recs:
            continue
        keys = []
        for r in recs:
            for k in r["case"]:
                if k not in keys:
                    keys.append(k)
        has_pred = any(r["predicted"] is not None for r in recs)
        has_emu = any(r["env"].get("emulation") is not None for r in recs)
        cols = keys + ["P/world"] + (["emulation"] if has_emu else []) + ["median", "spread"]
        if has_pred:
            cols += ["predicted", "measured/predicted"]
        recs.sort(key=lambda r: tuple(_sort_value(r["case"].get(k)) for k in keys)
                  + (_sort_value(r["env"]["sp_size"]), _sort_value(r["env"]["world_size"]),
                     emulation_label(r["env"])))
        numeric = {k for k in keys if all(_is_number(r["case"].get(k)) or r["case"].get(k) is None
                                          for r in recs)}
        lines += [f"## {bench}", "", "| " + " | ".join(cols) + " |",
                  "|" + "|".join("---" if c in keys and c not in numeric or c == "emulation"
                                 else "---:" for c in cols) + "|"]
        for r in recs:
            cells = ["" if r["case"].get(k) is None else str(r["case"][k]) for k in keys]
            cells.append(f"{r['env']['sp_size']}/{r['env']['world_size']}")
            if has_emu:
                cells.append(emulation_label(r["env"]))
            med = r["median"]
            cells.append(fmt_seconds(med))
            cells.append(f"{(r['max'] - r['min']) / med * 100:.1f}%" if med > 0 else "")
            if has_pred:
                pred = r["predicted"]
                cells.append(fmt_seconds(pred))
                cells.append(f"{med / pred:.2f}" if pred else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _matches(rec, condition):
    """condition "key=value": a case item, or latency_us / bandwidth_gbps of the emulation
    (value "none" matches a record without emulation); numbers compare as numbers."""
    key, _, want = condition.partition("=")
    em = rec["env"].get("emulation")
    if key in ("latency_us", "bandwidth_gbps"):
        have = None if em is None else em.get(key)
    elif key in rec["case"]:
        have = rec["case"][key]
    else:
        return False
    if have is None:
        return want in ("none", "null")
    if _is_number(have):
        try:
            return math.isclose(float(want), float(have), rel_tol=1e-9, abs_tol=1e-9)
        except ValueError:
            return False
    return str(have) == want


def cmd_merge(args):
    records, replaced = merge_files(args.files)
    for condition in args.where or []:
        if "=" not in condition:
            raise InputError(f"--where {condition!r}: expected KEY=VALUE")
        records = [r for r in records if _matches(r, condition)]
    head = (f"# seqpar benchmark results\n\n{len(records)} records from {len(args.files)} file(s)"
            f" ({replaced} replaced by a later file). P/world: sequence-parallel group size / world"
            f" size; spread: (max - min) / median.\n")
    text = head + "\n" + markdown_tables(records)
    print(text)
    if args.markdown:
        try:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise InputError(f"{args.markdown}: cannot write --markdown file: {e.strerror}")
        print(f"wrote {args.markdown}", file=sys.stderr)
    if args.plots:
        write_plots(records, args.plots)
    return 0


# ---------------------------------------------------------------------------------------------
# plots

def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise InputError("--plots needs matplotlib (pip install matplotlib)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _style_legend(ax, plt, series_handles, with_predicted=True, outside=False):
    from matplotlib.lines import Line2D
    handles = list(series_handles)
    handles.append(Line2D([], [], color="black", linestyle="-", marker="o", label="measured"))
    if with_predicted:
        handles.append(Line2D([], [], color="black", linestyle="--", label="predicted"))
    if outside:
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(handles=handles, fontsize=7, loc="best")


def plot_exchange(records, path, plt):
    recs = [r for r in records if r["bench"] == "exchange"]
    if not recs:
        return False
    groups = {}
    for r in recs:
        key = (tuple(sorted((k, v) for k, v in r["case"].items() if k != "P")),
               emulation_label(r["env"], hosts=False))
        groups.setdefault(key, []).append(r)
    # Label with the keys that tell the groups apart (algo and summary first).
    varying = sorted({k for key in groups for k, _ in key[0]
                      if len({dict(g[0]).get(k) for g in groups}) > 1},
                     key=lambda k: (k not in ("algo", "summary"), k))
    fig, ax = plt.subplots(figsize=(11, 5.5))
    colors = _colors(plt, len(groups))
    handles, any_pred, allP = [], False, set()
    for i, ((case_items, emu), rs) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        c = colors[i % len(colors)]
        rs.sort(key=ranks_of)
        d = dict(case_items)
        label = " ".join(f"{d.get(k)}" if k in ("algo", "summary") else f"{k}={d.get(k)}"
                         for k in varying) or "exchange"
        if emu:
            label += f" [{emu}]"
        P = [ranks_of(r) for r in rs]
        allP.update(P)
        (h,) = ax.plot(P, [r["median"] for r in rs], "-o", color=c, label=label, markersize=4)
        handles.append(h)
        pr = [(ranks_of(r), r["predicted"]) for r in rs if r["predicted"] is not None]
        if pr:
            any_pred = True
            ax.plot([x for x, _ in pr], [y for _, y in pr], "--", color=c)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(allP))
    ax.set_xticklabels([str(p) for p in sorted(allP)])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("P (ranks)")
    ax.set_ylabel("exchange time per iteration (s)")
    ax.set_title("exchange: measured (solid) and predicted (dashed)")
    ax.grid(True, which="both", alpha=0.3)
    _style_legend(ax, plt, handles, any_pred, outside=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _sweep_key(r):
    """Which sweep a record belongs to. A strong sweep keeps the total problem fixed, so all case
    keys but P identify it; a weak sweep keeps the per-rank problem fixed, so its totals "tokens"
    and "bytes" grow with P and are divided by P here."""
    case, P = r["case"], ranks_of(r)
    items = []
    for k, v in sorted(case.items()):
        if k == "P":
            continue
        if case["sweep"] == "weak" and k in ("tokens", "bytes") and _is_number(v):
            items.append((k + "/P", v / P))
        else:
            items.append((k, v))
    return (r["bench"], tuple(items), emulation_label(r["env"], hosts=False))


def plot_scaling(records, path, plt):
    recs = [r for r in records if r["case"].get("sweep") in ("weak", "strong")]
    if not recs:
        return False
    groups = {}
    for r in recs:
        groups.setdefault(_sweep_key(r), []).append(r)
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = _colors(plt, len(groups))
    handles, any_pred, allP = [], False, set()
    for i, ((bench, items, emu), rs) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        c = colors[i % len(colors)]
        rs.sort(key=ranks_of)
        weak = dict(items)["sweep"] == "weak"
        P0, base = ranks_of(rs[0]), rs[0]

        def eff(t, P, t0):
            return t0 / t if weak else t0 * P0 / (t * P)
        P = [ranks_of(r) for r in rs]
        allP.update(P)
        label = f"{bench} " + " ".join(f"{k}={_fmt_value(v)}" for k, v in items) + (f" [{emu}]" if emu else "")
        (h,) = ax.plot(P, [eff(r["median"], ranks_of(r), base["median"]) for r in rs], "-o",
                       color=c, label=label, markersize=4)
        handles.append(h)
        if all(r["predicted"] for r in rs):
            any_pred = True
            ax.plot(P, [eff(r["predicted"], ranks_of(r), base["predicted"]) for r in rs], "--",
                    color=c)
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(allP))
    ax.set_xticklabels([str(p) for p in sorted(allP)])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("P (ranks)")
    ax.set_ylabel("efficiency (weak: t(Pmin)/t(P); strong: t(Pmin) Pmin / (t(P) P))")
    ax.set_title("scaling efficiency: measured (solid), predicted (dashed), ideal (dotted)")
    ax.grid(True, alpha=0.3)
    _style_legend(ax, plt, handles, any_pred)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_kernel_gbps(records, path, plt):
    recs = [r for r in records if r["bench"] == "local_scan" and r["bytes_moved"]
            and r["roofline_gbps"] and r["median"] > 0]
    if not recs:
        return False
    recs.sort(key=lambda r: tuple(_sort_value(v) for _, v in sorted(r["case"].items())))
    keys = sorted({k for r in recs for k in r["case"]})
    varying = [k for k in keys if len({str(r["case"].get(k)) for r in recs}) > 1] or keys
    labels = ["\n".join(f"{k}={r['case'].get(k)}" for k in varying) for r in recs]
    gbps = [r["bytes_moved"] / r["median"] / 1e9 for r in recs]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(recs) + 2), 5))
    x = list(range(len(recs)))
    ax.bar(x, gbps, color="tab:blue", label="measured (bytes_moved / median)")
    for xi, g, r in zip(x, gbps, recs):
        ax.text(xi, g, f"{g:.1f}\n({g / r['roofline_gbps'] * 100:.0f}%)", ha="center",
                va="bottom", fontsize=7)
    roofs = sorted({r["roofline_gbps"] for r in recs})
    for j, roof in enumerate(roofs):
        ax.axhline(roof, color="tab:red", linestyle="-." if j else "-", linewidth=1.2,
                   label=f"roofline (triad, measured) {roof:.1f} GB/s")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("GB/s")
    ax.set_ylim(0, max(max(gbps), max(roofs)) * 1.25)
    ax.set_title("local scan: achieved bandwidth against the streaming roofline")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_plots(records, outdir):
    plt = _pyplot()
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise InputError(f"{outdir}: cannot create --plots directory: {e.strerror}")
    for name, fn, what in (
            ("exchange_vs_P.png", plot_exchange, "no exchange records"),
            ("scaling_efficiency.png", plot_scaling, "no records with case sweep weak/strong"),
            ("kernel_gbps.png", plot_kernel_gbps,
             "no local_scan records with bytes_moved and roofline_gbps")):
        path = os.path.join(outdir, name)
        if fn(records, path, plt):
            print(f"wrote {path}", file=sys.stderr)
        else:
            print(f"note: skipped {name}: {what}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# compare

def cmd_compare(args):
    if not args.threshold >= 0:
        raise InputError(f"--threshold must be >= 0, got {args.threshold}")
    base = {identity(r): r for r in load_records(args.base)}
    new = {identity(r): r for r in load_records(args.new)}
    m, th = args.metric, args.threshold
    common = [k for k in base if k in new]
    regressions = improved = 0
    print(f"compare {args.new} against {args.base}: new/base of {m}, threshold {th * 100:g}%")
    print(f"{'ratio':>7}  {'base':>11}  {'new':>11}  {'flag':<10}  case")
    for k in sorted(common, key=lambda k: describe(base[k])):
        b, n = base[k][m], new[k][m]
        if b > 0:
            ratio = n / b
            rtxt = f"{ratio:7.3f}"
        else:
            ratio, rtxt = (1.0 if n == 0 else math.inf), "    inf" if n else "  1.000"
        flag = ""
        if ratio > 1 + th:
            flag, regressions = "REGRESSION", regressions + 1
        elif ratio < 1 - th:
            flag, improved = "improved", improved + 1
        print(f"{rtxt}  {fmt_seconds(b):>11}  {fmt_seconds(n):>11}  {flag:<10}  {describe(base[k])}")
    only_base = [describe(base[k]) for k in base if k not in new]
    only_new = [describe(new[k]) for k in new if k not in base]
    for d in sorted(only_base):
        print(f"only in {args.base}: {d}")
    for d in sorted(only_new):
        print(f"only in {args.new}: {d}")
    print(f"summary: {len(common)} cases compared: {regressions} regression(s), {improved} improved, "
          f"{len(only_base)} only in base, {len(only_new)} only in new")
    return 1 if regressions else 0


# ---------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check files against the seqpar-bench/1 schema")
    v.add_argument("files", nargs="+", metavar="FILE")
    mg = sub.add_parser("merge", help="merge files, print markdown tables, optionally plot")
    mg.add_argument("files", nargs="+", metavar="FILE")
    mg.add_argument("--markdown", metavar="OUT.md", help="also write the tables here")
    mg.add_argument("--where", action="append", metavar="KEY=VALUE",
                    help="keep records whose case item (or emulated latency_us / bandwidth_gbps;"
                         " 'none' for no emulation) equals VALUE; repeatable")
    mg.add_argument("--plots", metavar="DIR", help="write exchange_vs_P.png, "
                    "scaling_efficiency.png, kernel_gbps.png here (needs matplotlib)")
    c = sub.add_parser("compare", help="new/base ratio per common case; exit 1 on a regression")
    c.add_argument("base", metavar="BASE.json")
    c.add_argument("new", metavar="NEW.json")
    c.add_argument("--threshold", type=float, default=0.10,
                   help="relative change that counts (default 0.10 = 10%%)")
    c.add_argument("--metric", choices=("median", "min", "max"), default="median")
    args = ap.parse_args(argv)
    try:
        return {"validate": cmd_validate, "merge": cmd_merge, "compare": cmd_compare}[args.cmd](args)
    except InputError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
