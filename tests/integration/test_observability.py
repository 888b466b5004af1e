"""The chart's observability kit against real series: every alert and dashboard query is run on a
real Prometheus that scrapes real predictors and the real operator, and must parse and return data.

The scene: a Triton ModelDeployment (kwok pods) walking a canary (held at its first step by a long
interval) and a KServe one running drift checks (drift needs the KServe predictor's histograms), the operator as its ServiceAccount with 1 s ticks, and two real KServe
predictor processes (ad-click v1 and v2, `rollout_harness.Evidence`) under steady load, scraped with
the labels the chart's PodMonitor gives the predictor pods; the operator's /metrics is scraped with
honor_labels, as the chart's ServiceMonitor does. The queries are read from `helm template` of the
chart (the PrometheusRule and the dashboard ConfigMap), not copied here: each alert's expression
has the shape `(SIGNAL) > LIMIT`, and the SIGNAL is what must return data (a healthy system fires
no alert). Tritonserver's half of the `or` queries is run in tests/serving/test_triton_analysis.py's
way elsewhere; here the whole query must answer.
"""

from __future__ import annotations

import json
import re

from mlsd_operator import _yaml
from tests.integration.operator_harness import OperatorProcess, eventually, install_crds
from tests.integration.rollout_harness import Evidence
from tests.conftest import manifest
from tests.unit.test_chart import CHART, MONITORING_APIS, helm

NAME, DRIFTING = "watched", "drifting"
SIGNAL = re.compile(r"^\((?P<signal>.*)\)\s*>\s*[0-9.]+$", re.S)


def chart_queries() -> tuple[dict[str, str], dict[str, str]]:
    """(alert -> its expression, dashboard panel title -> its expression), from the rendered chart."""
    docs = _yaml.load_all_text(helm("template", "mlsd-operator", str(CHART), "-n", "mlsd-system",
                                     *(f"--api-versions={a}" for a in MONITORING_APIS)).stdout)
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    alerts = {r["alert"]: r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]}
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    dashboard = json.loads(config_map["data"]["mlsd-serving.json"])
    panels = {f"{p['title']} [{t['refId']}]": t["expr"] for p in dashboard["panels"] for t in p["targets"]}
    variables = [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    for query in variables:       # label_values(SERIES, LABEL): the series must exist
        panels[f"variable {query}"] = re.fullmatch(r"label_values\((.*), \w+\)", query).group(1)
    return alerts, panels


def test_every_alert_and_dashboard_query_returns_data(control_plane, models, prometheus, namespace, tmp_path):
    install_crds(control_plane)
    alerts, panels = chart_queries()
    assert len(alerts) == 4 and len(panels) >= 8
    evidence = Evidence(models, prometheus, tmp_path)
    evidence.register(namespace, NAME)
    evidence.register(namespace, DRIFTING)
    operator = OperatorProcess(control_plane, tmp_path / "operator.log", env={
        "MLSD_PROMETHEUS_URL": prometheus.url, "MLSD_ROLLOUT_TICK_SECONDS": "1",
        "MLSD_DRIFT_TICK_SECONDS": "1", "MLSD_RESYNC_SECONDS": "5"}).start(leading=True)
    prometheus.scrape([(f"127.0.0.1:{operator.metrics_port}", {})], honor_labels=True)
    try:
        # The dashboard's ModelDeployment variable is multi-valued: the two together give every panel data.
        canary = manifest(name=NAME, namespace=None, runtime="triton", gateway={"name": "gw"},
                          model={"storageUri": "s3://models/ad/1"},
                          canary={"model": {"version": "2", "storageUri": "s3://models/ad/2"}, "steps": [10, 50],
                                  "interval": "30m", "progressDeadline": "1h",
                                  "analysis": {"minRequests": 1, "maxErrorRate": 0.05, "maxLatencyP99Ms": 5000,
                                               "maxPredictionDrift": 10, "failureLimit": 5}})
        drifting = manifest(name=DRIFTING, namespace=None, model={"storageUri": "s3://models/ad/1"},
                            drift={"window": "1m", "interval": "10s", "minSamples": 50, "threshold": 0.2})
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=_yaml.dump_all([canary, drifting]))

        def status(name):
            return json.loads(control_plane.kubectl("get", "mdep", name, "-n", namespace, "-o", "json").stdout
                              ).get("status") or {}

        eventually(operator, lambda: status(NAME).get("canary", {}).get("trafficPercent") == 10
                   and (status(DRIFTING).get("drift") or {}).get("features"),
                   "the canary at its first step, and a drift check with features", timeout=120)

        def answers(query: str) -> list:
            reply = prometheus.query(query)
            assert reply["status"] == "success", f"{query!r} does not run: {reply.get('error')}"
            return reply["data"]["result"]

        # The operator's series reach Prometheus a scrape after the status they come from.
        eventually(operator, lambda: answers(f'mlsd_drift_psi{{namespace="{namespace}"}}'),
                   "the operator's state series in Prometheus", timeout=60)
        variables = {"$namespace": namespace, "$model_deployment": f"{NAME}|{DRIFTING}"}
        empty: dict[str, str] = {}
        for title, expr in panels.items():
            for name, value in variables.items():
                expr = expr.replace(name, value)
            if not answers(expr):
                empty[title] = expr
        for alert, expr in alerts.items():
            match = SIGNAL.match(expr.strip())
            assert match, f"{alert}: the expression is not `(SIGNAL) > LIMIT`: {expr}"
            answers(expr)                    # the whole rule runs (it may well be empty: nothing fires)
            if not answers(match.group("signal")):
                empty[alert] = match.group("signal")
        assert not empty, "queries that return nothing:\n" + "\n".join(f"{k}: {v}" for k, v in empty.items())
        print(f"\n{len(alerts)} alert signals and {len(panels)} dashboard queries returned data")
    finally:
        operator.stop()
        evidence.stop()
