"""Tests of the benchmark tooling that needs no C++: benchmarks/bench_results.py (validate, merge,
compare on the recorded sample tests/data/bench_sample.json) and the dry-run/hostfile parts of
scripts/emulate_hosts.sh and scripts/netns_rsh.sh's argument handling. Everything runs the tools
as a user would (subprocesses), and nothing here creates a namespace: the dry runs are checked
to leave `ip netns list` unchanged and to write no state file (SEQPAR_EMULATE_STATE points into
tmp_path). Runs in a few seconds; the plot test is skipped without matplotlib.
"""
import copy
import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "benchmarks", "bench_results.py")
SAMPLE = os.path.join(REPO, "tests", "data", "bench_sample.json")
EMULATE = os.path.join(REPO, "scripts", "emulate_hosts.sh")
RSH = os.path.join(REPO, "scripts", "netns_rsh.sh")


def tool(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def load_sample():
    with open(SAMPLE) as f:
        return json.load(f)


def write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def find(doc, bench, **case):
    """Index of the one record of `bench` whose case contains `case`, without emulation."""
    hits = [i for i, r in enumerate(doc["records"]) if r["bench"] == bench
            and r["env"]["emulation"] is None and all(r["case"].get(k) == v for k, v in case.items())]
    assert len(hits) == 1, (bench, case, hits)
    return hits[0]


def scale(rec, factor):
    for k in ("median", "min", "max"):
        rec[k] *= factor


def case_lines(out):
    """compare's per-case lines: those that start with the ratio."""
    def is_ratio(word):
        try:
            float(word)
            return True
        except ValueError:
            return False
    return [line for line in out.splitlines() if line.split() and is_ratio(line.split()[0])]


def assert_one_line_error(res, *names):
    assert res.returncode == 2, res
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for n in names:
        assert n in lines[0], (n, lines[0])


# ------------------------------------------------------------------------------ validate

def test_validate_accepts_sample():
    res = tool("validate", SAMPLE)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ok (35 records" in res.stdout


def test_sample_covers_what_the_plots_need():
    recs = load_sample()["records"]
    ex = [r for r in recs if r["bench"] == "exchange"]
    assert {r["case"]["algo"] for r in ex} == {"tree", "allgather", "ring", "blelloch"}
    assert {r["case"]["summary"] for r in ex} == {"diagonal", "matrix"}
    assert {r["case"]["P"] for r in ex} == {2, 4, 8} and all(r["predicted"] for r in ex)
    for sweep in ("weak", "strong"):
        assert sorted(r["case"]["P"] for r in recs if r["case"].get("sweep") == sweep) == [1, 2, 4]
    loc = [r for r in recs if r["bench"] == "local_scan"]
    assert len(loc) == 2 and all(r["bytes_moved"] and r["roofline_gbps"] for r in loc)


@pytest.mark.parametrize("breakage, expected", [
    (lambda d: d["records"][3].pop("median"), "record 3: median: missing"),
    (lambda d: d["records"][5]["env"].pop("sp_size"), "record 5: env.sp_size: missing"),
    (lambda d: d["records"][0].__setitem__("repeats", "15"), "record 0: repeats: expected integer"),
    (lambda d: d["records"][1]["env"].__setitem__("world_size", 2.5),
     "record 1: env.world_size: expected integer"),
    (lambda d: d["records"][2]["env"]["versions"].__setitem__("cuda", 12),
     "record 2: env.versions.cuda: expected string or null"),
    (lambda d: d["records"][4].__setitem__("predicted", "1e-3"),
     "record 4: predicted: expected number or null"),
    (lambda d: d["records"][0].__setitem__("bench", "allreduce"), "record 0: bench: expected one of"),
    (lambda d: d["records"][0]["env"].__setitem__("date", "yesterday"), "record 0: env.date: expected ISO 8601"),
    (lambda d: d.__setitem__("schema", "seqpar-bench/0"), 'schema: expected "seqpar-bench/1"'),
    (lambda d: d.pop("schema"), "schema: missing"),
])
def test_validate_rejects_broken_copy(tmp_path, breakage, expected):
    doc = load_sample()
    breakage(doc)
    bad = write(tmp_path / "bad.json", doc)
    res = tool("validate", SAMPLE, bad)
    assert res.returncode == 1, res
    assert f"{SAMPLE}: ok" in res.stdout
    problems = [line for line in res.stdout.splitlines() if line.startswith(str(bad))]
    assert any(expected in line for line in problems), res.stdout


def test_validate_reports_every_problem_and_duplicates(tmp_path):
    doc = load_sample()
    doc["records"][0].pop("metric")
    doc["records"][1]["min"] = doc["records"][1]["max"] * 2          # min > median
    doc["records"].append(copy.deepcopy(doc["records"][2]))
    bad = write(tmp_path / "bad.json", doc)
    res = tool("validate", bad)
    assert res.returncode == 1
    out = res.stdout
    assert "record 0: metric: missing" in out
    assert "record 1: median: expected min <= median <= max" in out
    assert f"record {len(doc['records']) - 1}: case: same case identity as record 2" in out


# ------------------------------------------------------------------------------ merge

def test_merge_prints_tables(tmp_path):
    md = tmp_path / "out.md"
    res = tool("merge", SAMPLE, "--markdown", md)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for heading in ("## exchange", "## sp_scan", "## local_scan"):
        assert heading in out
    assert ("| algo | summary | P | bytes | dtype | P/world | emulation | median | spread | predicted"
            " | measured/predicted |") in out
    # Rows: measured tree/matrix P=2 (6.2 ms, +3%/-6% spread = 9%, model 5.754 ms) and the same
    # case on emulated hosts, which is a case of its own.
    assert "| tree | matrix | 2 | 2097152 | float32 | 2/2 |  | 6.200 ms | 9.0% | 5.754 ms | 1.08 |" in out
    assert "| tree | matrix | 2 | 2097152 | float32 | 2/2 | 2 hosts, +50 us, 1 Gbit/s | 24.100 ms |" in out
    assert "| ring | diagonal | 8 | 32768 | float32 | 8/8 |  | 130.0 us |" in out
    assert "| weak | 4 | 16384 | 1024 | float32 | tree | 4/4 | 15.800 ms | 10.0% | 6.500 ms | 2.43 |" in out
    assert "| strong | 2 | 16384 | 1024 | float32 | tree | 2/2 | 14.000 ms | 9.0% |  |  |" in out
    assert "| forward | channels_contiguous | 16777216 | 1 | float32 | 1/1 | 6.021 ms | 5.0% |" in out
    assert md.read_text().strip() == out.strip()


def test_merge_later_file_overrides(tmp_path):
    doc = load_sample()
    newer = {"schema": doc["schema"], "records": [copy.deepcopy(doc["records"][find(doc, "exchange", algo="ring", summary="matrix", P=4)])]}
    scale(newer["records"][0], 2.0)                                   # 4.3 ms -> 8.6 ms
    later = write(tmp_path / "later.json", newer)
    res = tool("merge", SAMPLE, later)
    assert res.returncode == 0, res.stderr
    assert "35 records from 2 file(s) (1 replaced by a later file)" in res.stdout
    assert "| ring | matrix | 4 | 2097152 | float32 | 4/4 |  | 8.600 ms |" in res.stdout
    assert "| ring | matrix | 4 | 2097152 | float32 | 4/4 |  | 4.300 ms |" not in res.stdout


def test_merge_writes_plots(tmp_path):
    pytest.importorskip("matplotlib")
    res = tool("merge", SAMPLE, "--plots", tmp_path / "plots")
    assert res.returncode == 0, res.stderr
    for name in ("exchange_vs_P.png", "scaling_efficiency.png", "kernel_gbps.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000, name


def test_merge_skips_plots_without_records(tmp_path):
    pytest.importorskip("matplotlib")
    doc = load_sample()
    doc["records"] = [r for r in doc["records"] if r["bench"] == "local_scan"]
    only_local = write(tmp_path / "local.json", doc)
    res = tool("merge", only_local, "--plots", tmp_path / "plots")
    assert res.returncode == 0, res.stderr
    assert "skipped exchange_vs_P.png: no exchange records" in res.stderr
    assert "skipped scaling_efficiency.png" in res.stderr
    assert sorted(os.listdir(tmp_path / "plots")) == ["kernel_gbps.png"]


# ------------------------------------------------------------------------------ compare

def test_compare_with_itself():
    res = tool("compare", SAMPLE, SAMPLE)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = case_lines(res.stdout)
    assert len(lines) == 35 and {line.split()[0] for line in lines} == {"1.000"}
    assert not any("REGRESSION" in line or "improved" in line for line in lines)
    assert "summary: 35 cases compared: 0 regression(s), 0 improved, 0 only in base, 0 only in new" in res.stdout


def test_compare_flags_regression_and_improvement(tmp_path):
    doc = load_sample()
    slow = find(doc, "exchange", algo="tree", summary="matrix", P=8)
    fast = find(doc, "sp_scan", sweep="strong", P=4)
    scale(doc["records"][slow], 1.3)
    scale(doc["records"][fast], 0.8)
    dropped = doc["records"].pop(find(doc, "local_scan", layout="time_contiguous"))
    new = write(tmp_path / "new.json", doc)
    res = tool("compare", SAMPLE, new)
    assert res.returncode == 1, res.stdout
    lines = case_lines(res.stdout)
    reg = [line for line in lines if "REGRESSION" in line]
    assert len(reg) == 1
    assert reg[0].split()[0] == "1.300" and "algo=tree" in reg[0] and "summary=matrix" in reg[0] \
        and "P=8 " in reg[0] and "world=8" in reg[0] and "emulated" not in reg[0] and "hosts" not in reg[0]
    imp = [line for line in lines if "improved" in line]
    assert len(imp) == 1 and imp[0].split()[0] == "0.800" and "sweep=strong" in imp[0] and "P=4" in imp[0]
    only = [line for line in res.stdout.splitlines() if line.startswith(f"only in {SAMPLE}:")]
    assert len(only) == 1 and "layout=time_contiguous" in only[0]
    assert dropped["bench"] == "local_scan"
    # Within the threshold: 30% slower is not a regression at --threshold 0.5; exit 0.
    res = tool("compare", SAMPLE, new, "--threshold", "0.5")
    assert res.returncode == 0 and "REGRESSION" not in res.stdout


def test_compare_only_faster_exits_zero(tmp_path):
    doc = load_sample()
    scale(doc["records"][find(doc, "exchange", algo="ring", summary="diagonal", P=2)], 0.5)
    res = tool("compare", SAMPLE, write(tmp_path / "new.json", doc), "--metric", "min")
    assert res.returncode == 0
    flagged = [line for line in case_lines(res.stdout) if "improved" in line or "REGRESSION" in line]
    assert len(flagged) == 1 and "improved" in flagged[0] and "algo=ring" in flagged[0]


# ------------------------------------------------------------------------------ bad input

def test_bad_paths_exit_2(tmp_path):
    missing = tmp_path / "missing.json"
    assert_one_line_error(tool("validate", missing), str(missing), "no such file")
    assert_one_line_error(tool("merge", SAMPLE, missing), str(missing))
    assert_one_line_error(tool("compare", missing, SAMPLE), str(missing))
    assert_one_line_error(tool("compare", SAMPLE, tmp_path), str(tmp_path), "directory")
    notjson = tmp_path / "notjson.json"
    notjson.write_text("{\"schema\": ")
    assert_one_line_error(tool("merge", notjson), str(notjson), "not valid JSON")
    doc = load_sample()
    doc["schema"] = "other/2"
    wrong = write(tmp_path / "wrong.json", doc)
    assert_one_line_error(tool("compare", SAMPLE, wrong), str(wrong), "schema")


# ------------------------------------------------------------------------------ emulate_hosts.sh

def netns_list():
    if shutil.which("ip") is None:
        return None
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def emulate(tmp_path, *args):
    env = dict(os.environ, SEQPAR_EMULATE_STATE=str(tmp_path / "state"))
    return subprocess.run(["bash", EMULATE, *args], capture_output=True, text=True, env=env,
                          timeout=30)


def test_emulate_up_dry_run(tmp_path):
    before = netns_list()
    res = emulate(tmp_path, "up", "--hosts", "3", "--rate", "1gbit", "--dry-run")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert all(line.startswith("+ ") for line in lines), lines
    for i in range(3):
        for expected in (
                f"+ ip netns add seqpar-h{i}",
                f"+ ip -n seqpar-h{i} link set lo up",
                f"+ ip -n seqpar-h{i} link add veth0 type veth peer name vh{i} netns seqpar-br",
                f"+ ip -n seqpar-h{i} addr add 10.77.0.{i + 1}/24 dev veth0",
                f"+ ip -n seqpar-br link set vh{i} master br0",
                f"+ tc -n seqpar-h{i} qdisc add dev veth0 root tbf rate 1gbit burst 125000 latency 20ms"):
            assert expected in lines, (expected, lines)
    assert lines[0] == "+ ip netns add seqpar-br"
    assert "+ ip -n seqpar-br link add br0 type bridge" in lines
    assert not any("seqpar-h3" in line for line in lines)
    assert str(tmp_path / "state") in lines[-1]
    # Nothing in the root namespace: every ip/tc command names a namespace.
    assert all(" -n seqpar-" in line or line.startswith(("+ ip netns add", "+ printf")) for line in lines)
    assert not (tmp_path / "state").exists()
    assert netns_list() == before
    # No --rate: no qdisc.
    res = emulate(tmp_path, "up", "--hosts", "2", "--dry-run")
    assert res.returncode == 0 and "tbf" not in res.stdout and "seqpar-h1" in res.stdout


def test_emulate_down_dry_run(tmp_path):
    before = netns_list()
    res = emulate(tmp_path, "down", "--dry-run", "--hosts", "3")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "+ ip netns del seqpar-h0", "+ ip netns del seqpar-h1", "+ ip netns del seqpar-h2",
        "+ ip netns del seqpar-br", f"+ rm -f {tmp_path / 'state'}"]
    res = emulate(tmp_path, "down", "--dry-run")
    assert res.returncode == 0, res.stderr
    ours = [n.split()[0] for n in (before or "").splitlines() if n.startswith("seqpar-")]
    if not ours:
        assert res.stdout == "" and "nothing to remove" in res.stderr
    else:   # someone's emulation is up: the dry run lists it, and touches nothing
        assert all(f"+ ip netns del {n}" in res.stdout for n in ours)
    assert netns_list() == before


def test_emulate_hostfile_and_errors(tmp_path):
    res = emulate(tmp_path, "hostfile", "--hosts", "3")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "10.77.0.1 slots=1\n10.77.0.2 slots=1\n10.77.0.3 slots=1\n"
    res = emulate(tmp_path, "hostfile")
    assert res.returncode == 1 and "--hosts N" in res.stderr and str(tmp_path / "state") in res.stderr
    (tmp_path / "state").write_text("hosts=2\nrate=none\n")
    assert emulate(tmp_path, "hostfile").stdout == "10.77.0.1 slots=1\n10.77.0.2 slots=1\n"
    for args, named in ((["up", "--hosts", "0", "--dry-run"], "--hosts"),
                        (["up", "--hosts", "two", "--dry-run"], "--hosts"),
                        (["up", "--dry-run"], "--hosts"),
                        (["up", "--hosts", "2", "--rate", "100", "--dry-run"], "--rate"),
                        (["up", "--hosts", "2", "--bogus"], "--bogus"),
                        (["exec", "x", "true"], "host index")):
        res = emulate(tmp_path, *args)
        assert res.returncode != 0 and named in res.stderr, (args, res.stderr)
        assert not res.stdout.startswith("+ "), args


def test_netns_rsh_rejects_foreign_hosts():
    for args in (["-x", "example.org", "true"], ["10.77.0.0", "true"], ["10.77.1.2", "true"]):
        res = subprocess.run(["bash", RSH, *args], capture_output=True, text=True, timeout=30)
        assert res.returncode == 255 and "not an emulated host address" in res.stderr, args
    res = subprocess.run(["bash", RSH, "10.77.0.2"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 255 and "usage" in res.stderr


# ---- benchmarks/sp_cost_model.py: the alpha-beta fit over both result formats -------------

COST_MODEL = os.path.join(REPO, "benchmarks", "sp_cost_model.py")


def fit_lines(tmp_path, *inputs, stat="median"):
    """{algo: (alpha_us, beta_GBps)} printed by sp_cost_model.py for the given result files."""
    r = subprocess.run([sys.executable, COST_MODEL, *inputs, "--out", str(tmp_path / "fit.json"),
                        "--fit-max-p", "2", "--stat", stat], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in ("tree", "exscan", "allgather"):
            rows[parts[0]] = (float(parts[1]), float(parts[2]))
    return rows


def test_cost_model_reproduces_the_committed_fit_from_the_older_program(tmp_path):
    # benchmarks/sp_results/sp_cost_model.txt was written from these files; the constants of
    # comm::cost_model_for("mpi") are this fit.
    files = [os.path.join(REPO, "benchmarks", "sp_results", f"mpi_np{p}.json") for p in (2, 3, 4, 8)]
    rows = fit_lines(tmp_path, *files)
    assert rows["tree"] == (6.79, 2.561)
    assert rows["exscan"] == (4.95, 1.423)
    assert rows["allgather"] == (7.15, 3.542)


def test_cost_model_reads_seqpar_bench_records(tmp_path):
    # Only the diagonal exchanges without injected latency are fitted: a copy of the file with
    # every time scaled by 10 and a latency-injected duplicate must fit 10x alpha, beta / 10.
    path = os.path.join(REPO, "docs", "results", "exchange_fit", "exchange_p2.json")
    base = fit_lines(tmp_path, path)
    assert set(base) == {"tree", "exscan", "allgather"}
    with open(path) as f:
        doc = json.load(f)
    slow = copy.deepcopy(doc)
    for r in slow["records"]:
        r["median"] *= 10
    delayed = copy.deepcopy(doc)
    for r in delayed["records"]:
        r["median"] = 1.0
        r["env"]["emulation"] = {"latency_us": 50}
    scaled = fit_lines(tmp_path, write(tmp_path / "slow.json", slow), write(tmp_path / "delayed.json", delayed))
    for algo, (alpha, gbps) in base.items():
        assert scaled[algo][0] == pytest.approx(10 * alpha, rel=0.01, abs=0.05)
        assert scaled[algo][1] == pytest.approx(gbps / 10, rel=0.02, abs=0.002)


def test_cost_model_min_statistic_ignores_delayed_repetitions(tmp_path):
    # Medians inflated 100x (every repetition delayed but the fastest) leave the min fit alone.
    path = os.path.join(REPO, "docs", "results", "exchange_fit", "exchange_p2.json")
    with open(path) as f:
        doc = json.load(f)
    base = fit_lines(tmp_path, path, stat="min")
    for r in doc["records"]:
        r["median"] = 100 * r["min"]
    assert fit_lines(tmp_path, write(tmp_path / "delayed.json", doc), stat="min") == base
    assert fit_lines(tmp_path, write(tmp_path / "delayed2.json", doc))["tree"] != base["tree"]


def test_split_long_probe_arithmetic_on_cpu(tmp_path):
    """benchmarks/split_long_probe.py (a GPU probe, run by scripts/gpu_session.sh) on the CPU:
    the split scan (pieces summarised, their maps scanned, the pieces scanned from the states
    before them) must equal the float64 reference as closely as the direct op does, give or
    take the rounding of the piece summaries to float32."""
    out = tmp_path / "split.jsonl"
    r = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "split_long_probe.py"),
                        "--device", "cpu", "--quick", "--reps", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(row["BD"], row["P"]) for row in rows} == {(1, 16), (1, 64), (4, 16), (4, 64)}
    # The direct op accumulates in float64, so only its float32 outputs round: 2e-7 is about
    # three roundings (2^-24 = 6e-8). The split also rounds each piece's (A, B) to float32 once:
    # at most P = 64 such roundings, about 8 x 6e-8 = 5e-7 as a random walk (3.8e-6 if every
    # one added up); seen: 7e-8 to 1e-7.
    for row in rows:
        assert row["direct_err"] < 2e-7, row
        assert row["split_err"] < 1e-6, row
