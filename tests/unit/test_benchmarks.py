"""The benchmark report code on small real inputs: statistics, aggregation, Markdown, JSON and PNG."""

from __future__ import annotations

import json
import math
import time

import pytest

from benchmarks import _report, frontdoor, operator_ready, serving
from benchmarks._env import environment
from benchmarks._stats import describe_growth, growth, percentiles, summarize


def test_summarize_gives_median_and_spread():
    s = summarize([3.0, 1.0, 2.0, float("nan"), None])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert s["q1"] == 1.5 and s["q3"] == 2.5
    assert summarize([])["n"] == 0 and math.isnan(summarize([])["median"])


def test_percentiles_of_samples():
    assert percentiles(list(range(1, 101))) == pytest.approx([50.5, 95.05, 99.01])
    assert all(math.isnan(v) for v in percentiles([]))


def test_growth_fit_recovers_the_exponent_and_the_per_step_ratios():
    linear = growth([10, 100, 1000], [2.0, 20.0, 200.0])
    assert linear["exponent"] == pytest.approx(1.0)
    assert [s["ratio"] for s in linear["steps"]] == pytest.approx([1.0, 1.0])
    assert [p["y_per_n"] for p in linear["per_n"]] == pytest.approx([0.2, 0.2, 0.2])
    sqrt = growth([100, 10, 1000], [10.0, math.sqrt(10), math.sqrt(1000)])   # unsorted input
    assert sqrt["exponent"] == pytest.approx(0.5)
    assert "sub-linear" in describe_growth(sqrt)
    assert "near linear" in describe_growth(linear)
    assert "no growth fit" in describe_growth(growth([10], [1.0]))


def test_closed_loop_measures_a_real_call_after_warm_up():
    calls = []
    result = serving.closed_loop(lambda: lambda: (calls.append(1), time.sleep(0.002)), 2, 0.05, 0.2,
                                 lambda: serving.process_usage(lambda: []))
    assert 20 < result["requests"] < len(calls)          # warm-up calls are not counted
    assert result["errors"] == 0
    assert 2.0 <= result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["rps"] == pytest.approx(result["requests"] / 0.2)


def _cell(runtime, protocol, c, rps, run=0, precision="fp32", batching=True):
    return {"case": "ad-click-prediction", "precision": precision, "batching": batching, "runtime": runtime,
            "protocol": protocol, "concurrency": c, "run": run, "requests": int(rps), "rps": rps,
            "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "cpu_ms_per_request": 0.5, "rss_mib": 100.0, "errors": 0}


def serving_result() -> dict:
    records = []
    for run, jitter in enumerate((1.0, 1.1, 0.9)):
        records += [_cell("onnxruntime", "in-process", 8, 10_000 * jitter, run),
                    _cell("kserve", "http", 8, 1_000 * jitter, run), _cell("triton", "http", 8, 800 * jitter, run),
                    _cell("kserve", "http", 8, 500 * jitter, run, batching=False),
                    _cell("triton", "http", 8, 1_000 * jitter, run, batching=False),
                    _cell("onnxruntime", "in-process", 8, 12_000 * jitter, run, precision="int8"),
                    _cell("kserve", "http", 8, 1_200 * jitter, run, precision="int8"),
                    _cell("triton", "http", 8, 600 * jitter, run, precision="int8")]
    matrix = serving.Matrix(cases=["ad-click-prediction"], concurrency=[8], protocols=["http"], precisions=["int8"],
                            precision_concurrency=8, batching_concurrency=8)
    return {"matrix": vars(matrix), "trimmed": matrix.trimmed(), "models": "/m", "model_size": "small",
            "records": records, "rows": serving.aggregate(records), "tritonserver_reported": "2.51.0"}


def test_serving_rows_carry_ratios_to_the_ceiling_and_to_triton():
    rows = {(r["precision"], r["batching"], r["runtime"]): r for r in serving_result()["rows"]}
    kserve = rows[("fp32", True, "kserve")]
    assert kserve["rps"]["median"] == pytest.approx(1_000) and kserve["rps"]["min"] == pytest.approx(900)
    assert kserve["x_ceiling"] == pytest.approx(0.1) and kserve["x_triton"] == pytest.approx(1.25)
    # batching off compares with Triton also off, and with the same ceiling
    assert rows[("fp32", False, "kserve")]["x_triton"] == pytest.approx(0.5)
    assert rows[("fp32", False, "kserve")]["x_ceiling"] == pytest.approx(0.05)
    assert rows[("int8", True, "kserve")]["x_ceiling"] == pytest.approx(0.1)
    assert rows[("fp32", True, "onnxruntime")]["x_triton"] is None


def operator_result() -> dict:
    def run(n, r, ready):
        apply = {"apply_s": 0.1 * n, "children_s": 0.5 * ready, "ready_s": ready, "cpu_s": 0.05 * n,
                 "rss_peak_mib": 130 + n / 10, "rss_end_mib": 130, "reconciles": 3 * n, "api_requests": 28 * n,
                 "api_by_verb": {"get deployments": 5 * n, "patch deployments": n}, "api_per_mdep": 28.0,
                 "api_per_reconcile": 28 / 3}
        change = {"sent_s": 0.01 * n, "all_updated_s": 0.02 * n, "latency_p50_ms": 400 + n, "latency_p95_ms": 500 + n,
                  "latency_p99_ms": 600 + 2 * n, "cpu_s": 0.02 * n, "reconciles": n, "api_requests": 17 * n,
                  "api_by_verb": {}, "api_per_mdep": 17.0, "api_per_reconcile": 17.0}
        return {"n": n, "run": r, "apply": apply, "change": change}

    runs = [run(10, 0, 3.0), run(10, 1, 3.4), run(100, 0, 25.0), run(500, 0, 120.0)]
    baseline = [{"n": 10, "run": 0, "ready_s": 2.0}, {"n": 10, "run": 1, "ready_s": 2.2}]
    scale = operator_ready.Scale(counts=[10, 100, 500], repeat=2, baseline_max=10)
    rows, fits = operator_ready.aggregate(runs, baseline)
    return {"scale": vars(scale), "trimmed": scale.trimmed(), "idle_rss_mib": 128.0, "operator_runs": runs,
            "baseline_runs": baseline, "rows": rows, "growth": fits}


def test_operator_aggregation_and_growth():
    result = operator_result()
    ten = result["rows"][0]
    assert ten["runs"] == 2 and ten["ready_s"]["median"] == pytest.approx(3.2)
    assert ten["x_direct"] == pytest.approx(3.2 / 2.1)
    assert result["rows"][1]["direct_ready_s"] is None and result["rows"][1]["x_direct"] is None
    assert ten["change_cpu_ms_per_mdep"]["median"] == pytest.approx(20.0)
    assert result["growth"]["apply_cpu_s"]["exponent"] == pytest.approx(1.0)
    assert 0.9 < result["growth"]["ready_s"]["exponent"] < 1.1


def test_frontdoor_extra_latency_is_paired_per_repeat():
    records = []
    for run, (direct, front) in enumerate(((1.0, 3.0), (2.0, 3.5), (1.5, 2.0))):
        for path, p50 in (("direct", direct), ("frontdoor", front)):
            records.append({"path": path, "protocol": "http", "concurrency": 1, "run": run, "rps": 1000 / p50,
                            "p50_ms": p50, "p99_ms": 2 * p50, "cpu_ms_per_request": p50 / 2, "requests": 10,
                            "errors": 0})
    (row,) = frontdoor.aggregate(records)
    assert row["runs"] == 3
    assert row["extra_p50_ms"]["median"] == pytest.approx(1.5)
    assert (row["extra_p50_ms"]["min"], row["extra_p50_ms"]["max"]) == pytest.approx((0.5, 2.0))


def test_report_writes_markdown_json_and_pngs(tmp_path):
    rollout = {"timings": {"interval_s": 10, "steps": [20, 50], "tick_s": 1.0, "scrape_s": 1.0, "traffic_rps": 40,
                           "min_requests": 20, "max_error_rate": 0.01, "max_latency_p99_ms": 1000,
                           "max_prediction_drift": 0.5, "failure_limit": 2},
               "rows": [{"canary": "v2", "outcome": "Promoted", "seconds": 21.6, "floor_s": 20, "overhead_s": 1.6,
                         "dark_s": 0.8, "reason": "all 2 steps passed", "requests_stable": 367,
                         "requests_canary": 203}], "watch": ""}
    fd_records = [{"path": p, "protocol": "grpc", "concurrency": 8, "run": 0, "rps": 900.0, "p50_ms": 1.0,
                   "p99_ms": 2.0, "cpu_ms_per_request": 0.4, "requests": 900, "errors": 0} for p in ("direct", "frontdoor")]
    env = environment()
    results = {"mode": "full", "command": "python -m benchmarks", "environment": env, "total_s": 600.0,
               "durations_s": {"serving": 300.0, "operator": 200.0, "rollout": 60.0, "frontdoor": 40.0},
               "load_average_at_end": [1.0, 1.0, 1.0],
               "parts": {"serving": serving_result(), "operator": operator_result(), "rollout": rollout,
                         "frontdoor": {"setup": vars(frontdoor.Setup()), "records": fd_records,
                                       "rows": frontdoor.aggregate(fd_records)}}}
    written = _report.write(results, tmp_path)
    names = {p.name for p in written}
    assert {"results.md", "results.json", "serving_throughput.png", "serving_p99.png", "serving_variants.png",
            "operator_scaling.png", "frontdoor.png"} <= names
    for png in (p for p in written if p.suffix == ".png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    text = (tmp_path / "results.md").read_text()
    assert "| fp32 | on | kserve | http | 8 | 1,000 (900-1,100) |" in text
    assert "| 0.10x | 1.25x |" in text
    assert "GPU: " + env["gpu"] in text
    assert "grows as N^" in text and "| v2 | Promoted | 21.6 | 20 | 1.6 | 0.8 |" in text
    assert json.loads((tmp_path / "results.json").read_text())["parts"]["operator"]["rows"][0]["n"] == 10


def test_report_keeps_a_failed_part_and_names_parts_not_run(tmp_path):
    results = {"mode": "quick", "command": "python -m benchmarks --quick", "environment": environment(),
               "total_s": 5.0, "durations_s": {"serving": 5.0}, "parts": {"serving": {"error": "RuntimeError: boom"}}}
    _report.write(results, tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "Failed: RuntimeError: boom" in text and "## Operator at scale\n\nNot run" in text


def test_audit_counts_filter_the_operator_and_the_window_across_rotated_files(tmp_path):
    def event(user, verb, resource, at, subresource=None):
        ref = {"resource": resource, **({"subresource": subresource} if subresource else {})}
        return json.dumps({"user": {"username": user}, "verb": verb, "objectRef": ref,
                           "requestReceivedTimestamp": at})
    op, other = operator_ready.OPERATOR_USER, "system:kube-scheduler"
    (tmp_path / "bench-audit-2026-01-01T00-00-10.000.log").write_text("\n".join([
        event(op, "patch", "deployments", "2026-01-01T00:00:05.000000Z"),    # before the window
        event(op, "patch", "deployments", "2026-01-01T00:00:11.500000Z")]) + "\n")
    (tmp_path / "bench-audit.log").write_text("\n".join([
        event(op, "patch", "modeldeployments", "2026-01-01T00:00:12.000000Z", "status"),
        event(other, "get", "pods", "2026-01-01T00:00:12.000000Z"),
        "not json",
        event(op, "get", "deployments", "2026-01-01T00:00:30.000000Z")]) + "\n")   # after
    start = 1767225610.0     # 2026-01-01T00:00:10Z
    counts = operator_ready.audit_counts(tmp_path / "bench-audit.log", start, start + 10)
    assert counts == {"patch deployments": 1, "patch modeldeployments/status": 1}


def test_open_loop_cells_and_the_sustainable_rate():
    from benchmarks.openloop import Cell, cell_from_report, summary, sustainable

    report = {"requests": 1000, "status_codes": {"200": 900, "503": 90, "0": 10},
              "latencies": {"50th": 2_000_000, "99th": 30_000_000}}
    cell = cell_from_report("front door", "200 candidates", 200, 100, 10.0, report)
    assert (cell.answered, cell.shed, cell.failed, cell.p50_ms, cell.p99_ms) == (900, 90, 10, 2.0, 30.0)
    assert cell.rows_per_second == 900 * 200 / 10 and not cell.sustained
    ok = Cell("front door", "200 candidates", 200, 50, 500, 500, 0, 0, 1.0, 20.0, 10.0)
    slow = Cell("front door", "200 candidates", 200, 75, 750, 750, 0, 0, 1.0, 26.0, 10.0)
    assert sustainable([ok, slow, cell]) == {("front door", "200 candidates"): 50}
    assert sustainable([slow]) == {("front door", "200 candidates"): 0}
    assert "0.50x of 20,000" in summary([ok], {"200 candidates": 20_000.0})
