"""The documented Prometheus series on both runtimes (docs/serving.md, "Metrics")."""

from __future__ import annotations

import httpx
import pytest
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

from mlsd_predictors.servers import SCORE_BUCKETS

from ._reference import CASES, client, infer_inputs, inputs

pytestmark = pytest.mark.serving
LABELS = {"model", "version", "track", "case_study"}
SCORE_LABEL = {"ad-click-prediction": "click_probability", "harmful-content": "hate_speech",
               "visual-search": "top1_similarity", "video-recommendation": "top_score"}


def families(url: str) -> dict[str, list]:
    text = httpx.get(url, timeout=10).text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def samples(fams: dict[str, list], sample_name: str, **labels: str) -> list:
    return [s for samples in fams.values() for s in samples
            if s.name in (sample_name, f"{sample_name}_total") and all(s.labels.get(k) == v for k, v in labels.items())]


@pytest.mark.parametrize("case", CASES)
def test_kserve_series(case, kserve_servers) -> None:
    endpoint = kserve_servers[case]
    for rows in (1, 3):
        client(httpclient, endpoint.http).infer(case, infer_inputs(httpclient, inputs(case, rows, rows)))
    fams = families(endpoint.metrics)
    who = {"model": case, "version": "1", "track": "stable", "case_study": case}
    ok = samples(fams, "mlsd_requests_total", **who, code="200")
    assert ok and ok[0].value >= 2
    assert set(ok[0].labels) == LABELS | {"code"}
    assert samples(fams, "mlsd_inflight_requests", **who)
    for stage in ("preprocess", "predict", "postprocess", "total"):
        assert samples(fams, "mlsd_request_duration_seconds_count", **who, stage=stage)[0].value >= 2
    assert samples(fams, "mlsd_batch_size_count", **who)[0].value >= 1
    buckets = samples(fams, "mlsd_prediction_score_bucket", **who, output=SCORE_LABEL[case])
    assert [float(b.labels["le"]) for b in buckets] == [*SCORE_BUCKETS, float("inf")]
    assert buckets[-1].value >= 4   # one score per row
    assert samples(fams, "mlsd_model_info", **who, precision="fp32", runtime="kserve")


def test_kserve_errors_are_counted_by_reason(kserve_servers) -> None:
    endpoint = kserve_servers["ad-click-prediction"]
    before = samples(families(endpoint.metrics), "mlsd_request_errors_total", reason="wrong_shape")
    bad = {"inputs": [{"name": "sparse_ids", "datatype": "INT64", "shape": [1, 3], "data": [1, 2, 3]},
                      {"name": "dense", "datatype": "FP32", "shape": [1, 6], "data": [1.0] * 6}]}
    assert httpx.post(f"http://{endpoint.http}/v2/models/ad-click-prediction/infer", json=bad).status_code == 400
    after = samples(families(endpoint.metrics), "mlsd_request_errors_total", reason="wrong_shape")
    assert after[0].value == (before[0].value if before else 0) + 1
    assert samples(families(endpoint.metrics), "mlsd_requests_total", code="400")


def test_triton_series(triton_server) -> None:
    for case in CASES:
        if case in ("visual-search", "video-recommendation"):
            rows = 2   # batch 1 hits a bug in the build's ann_model.py (see test_parity); not a metrics matter
        else:
            rows = 1
        client(httpclient, triton_server[case].http).infer(case, infer_inputs(httpclient, inputs(case, rows, 5)))
    fams = families(triton_server["ad-click-prediction"].metrics)
    for name in ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_queue_duration_us",
                 "nv_inference_compute_infer_duration_us", "nv_inference_pending_request_count"):
        assert samples(fams, name, model="ad-click-prediction"), name
    # Per-stage latency summaries (--metrics-config summary_latencies=true).
    assert samples(fams, "nv_inference_queue_summary_us_count", model="ad-click-prediction")
    for case, model in (("ad-click-prediction", "ad-click-prediction"), ("harmful-content", "harmful-content"),
                        ("video-recommendation", "video-recommendation-ranking")):
        who = {"model": model, "version": "1", "track": "stable", "case_study": case}
        assert samples(fams, "mlsd_batch_size_count", **who)[0].value >= 1
        output = {"harmful-content": "hate_speech", "ad-click-prediction": "click_probability"}.get(case, "scores")
        buckets = samples(fams, "mlsd_prediction_score_bucket", **who, output=output)
        assert [float(b.labels["le"]) for b in buckets] == [*SCORE_BUCKETS, float("inf")]
