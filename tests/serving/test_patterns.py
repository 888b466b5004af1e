"""The serving patterns of spec.batch, spec.cache and spec.drift on real KServe ModelServers over
loopback and the real `mlsd batch` / `python -m mlsd_predictors.batch` processes.

- batch answers equal online answers for the same rows;
- an interrupted, partial or failed batch run leaves no output and the previous run in place;
- cache hits return identical answers (in any encoding), partial hits compute only the misses,
  and a version change never serves a cached answer of the previous version;
- the drift series carry the model card's references exactly, and in-distribution traffic bins
  like the held-out data did at build time (same edges, same transform).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from mlsd_predictors.batch._output import latest_run, read_run

from ._reference import client, infer_inputs, inputs
from tests._support import free_port, stop_process, wait_http

from .conftest import HOST

REPO = Path(__file__).resolve().parents[2]


def metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


def samples(text: str, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of `name` whose labels include `labels`, keyed by its full label set."""
    out = {}
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        body, value = line[len(name) + 1:].rsplit("} ", 1)
        found = tuple(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', body))
        if all((k, v) in found for k, v in labels.items()):
            out[found] = float(value)
    return out


def by_label(found: dict, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for k, v in found.items()}


def online(endpoint: str, case: str, feeds: dict[str, np.ndarray], rows_per_request: int = 64) -> dict[str, np.ndarray]:
    """Answers for every row, in requests of at most the predictor's batch limit."""
    chunks: dict[str, list[np.ndarray]] = {}
    rows = len(next(iter(feeds.values())))
    for start in range(0, rows, rows_per_request):
        part = {name: array[start:start + rows_per_request] for name, array in feeds.items()}
        result = client(httpclient, endpoint).infer(case, infer_inputs(httpclient, part))
        for output in result.get_response()["outputs"]:
            chunks.setdefault(output["name"], []).append(result.as_numpy(output["name"]))
    return {name: np.concatenate(values) for name, values in chunks.items()}


# -- batch prediction -----------------------------------------------------------------------------

def write_manifest(path: Path, case: str, models_root: Path, data: Path, **batch) -> Path:
    spec = {"caseStudy": case,
            "model": {"version": "1", "storageUri": f"file://{models_root / case / '1'}"},
            "batch": {"input": f"file://{data / 'input.npz'}", "output": f"file://{data / 'out'}",
                      "batchSize": 64, **batch}}
    path.write_text(json.dumps({"apiVersion": "mlsd.io/v1alpha1", "kind": "ModelDeployment",
                                "metadata": {"name": f"{case}-batch"}, "spec": spec}))
    return path


def mlsd_batch(manifest: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlsd_operator", "batch", str(manifest), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", ["video-recommendation", "visual-search", "harmful-content"])
def test_batch_predictions_equal_online_predictions(case, models_root, kserve_servers, tmp_path):
    feeds = inputs(case, 300, seed=11)
    np.savez(tmp_path / "input.npz", **feeds)
    manifest = write_manifest(tmp_path / "mdep.json", case, models_root, tmp_path, parallelism=3)
    result = mlsd_batch(manifest, "--run", "first")
    assert result.returncode == 0, result.stderr
    manifest_json, batch = read_run(tmp_path / "out")
    assert latest_run(tmp_path / "out") == "first"
    assert manifest_json["rows"] == 300 and len(manifest_json["parts"]) == 3
    answers = online(kserve_servers[case].http, case, feeds)
    for name, values in answers.items():
        assert batch[name].shape == values.shape, name
        if values.dtype.kind in "iub":
            np.testing.assert_array_equal(batch[name], values, err_msg=name)
        else:
            np.testing.assert_allclose(batch[name], values, rtol=1e-5, atol=1e-6, err_msg=name)


def test_visual_search_batch_rebuilds_the_catalogue_index(models_root, tmp_path):
    """A new image catalogue: embeddings plus one ANN index keyed by the catalogue's own ids, built
    as `mlsd build` builds the served one; every image finds itself first."""
    from usearch.index import Index

    case = "visual-search"
    feeds = inputs(case, 240, seed=31)
    ids = np.arange(50_000, 50_240)
    np.savez(tmp_path / "input.npz", **feeds, item_ids=ids)
    manifest = write_manifest(tmp_path / "mdep.json", case, models_root, tmp_path, parallelism=2)
    result = mlsd_batch(manifest, "--run", "catalogue")
    assert result.returncode == 0, result.stderr
    run_manifest, scored = read_run(tmp_path / "out")
    assert run_manifest["artifacts"]["catalogue.usearch"]["items"] == 240
    index = Index.restore(str(tmp_path / "out" / "latest" / "catalogue.usearch"), view=True)
    assert len(index) == 240
    nearest = index.search(scored["embedding"], 1)
    np.testing.assert_array_equal(np.asarray(nearest.keys).ravel(), ids)


def test_interrupted_partial_and_failed_runs_leave_the_previous_output(models_root, tmp_path):
    case = "video-recommendation"
    np.savez(tmp_path / "input.npz", **inputs(case, 200, seed=1))
    manifest = write_manifest(tmp_path / "mdep.json", case, models_root, tmp_path)
    assert mlsd_batch(manifest, "--run", "good").returncode == 0
    out = tmp_path / "out"
    _, good = read_run(out)

    def unchanged() -> None:
        assert latest_run(out) == "good"
        assert sorted(p.name for p in (out / "runs").iterdir()) == ["good"]
        np.testing.assert_array_equal(read_run(out)[1]["ranked_ids"], good["ranked_ids"])

    # 1. killed mid-run: a large input, SIGKILL while scoring
    big = inputs(case, 40_000, seed=2)
    np.savez(tmp_path / "big.npz", **big)
    command = [sys.executable, "-m", "mlsd_predictors.batch", f"--case-study={case}",
               f"--model-dir={models_root / case / '1' / 'kserve' / 'fp32'}", f"--input={tmp_path / 'big.npz'}",
               f"--output={out}", "--run=killed", "--batch-size=8"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(4.0)
    assert process.poll() is None, "the run finished before it could be interrupted; use a larger input"
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    unchanged()

    # 2. one shard of two finished: nothing is committed until the other one is
    first = subprocess.run([*command[:-2], "--run=sharded", "--shards=2", "--shard=0", "--batch-size=256"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert (out / ".staging" / "sharded").is_dir()
    unchanged()
    second = subprocess.run([*command[:-2], "--run=sharded", "--shards=2", "--shard=1", "--batch-size=256"],
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert latest_run(out) == "sharded" and read_run(out)[0]["rows"] == 40_000
    # a retried shard of a committed run does nothing
    again = subprocess.run([*command[:-2], "--run=sharded", "--shards=2", "--shard=0"], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "already complete" in again.stderr

    # 3. a run that fails on its input: clear error, nothing committed, `latest` kept
    np.savez(tmp_path / "input.npz", user_id=np.zeros((5, 1), np.int64))       # user_features missing
    failed = mlsd_batch(manifest, "--run", "broken")
    assert failed.returncode == 1
    assert "missing array(s) user_features" in failed.stderr
    assert latest_run(out) == "sharded"
    assert not (out / "runs" / "broken").exists()


# -- prediction cache -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cached_visual_search(models_root, tmp_path_factory):
    case = "visual-search"
    http, grpc = free_port(), free_port()
    log = tmp_path_factory.mktemp("cached") / "server.log"
    command = [sys.executable, "-m", "mlsd_predictors.servers.kserve", f"--case_study={case}", f"--model_name={case}",
               f"--model_dir={models_root / case / '1' / 'kserve' / 'fp32'}", f"--host={HOST}",
               f"--http_port={http}", f"--grpc_port={grpc}", "--ort_threads=1"]
    env = {**__import__("os").environ, "MLSD_CACHE_SIZE": "1000", "MLSD_CACHE_TTL_SECONDS": "600"}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_http(f"http://{HOST}:{http}/v2/models/{case}/ready", process, log)
        yield f"{HOST}:{http}"
    finally:
        stop_process(process)


def cache_counts(address: str) -> dict[str, float]:
    return by_label(samples(metrics(f"http://{address}/metrics"), "mlsd_cache_lookups_total"), "result")


def test_cache_hits_are_identical_and_partial_hits_compute_only_misses(cached_visual_search, kserve_servers):
    case = "visual-search"
    feeds = inputs(case, 16, seed=21)
    before = cache_counts(cached_visual_search)
    first = online(cached_visual_search, case, feeds)
    # the same rows again, as JSON instead of binary: the canonical row is what is keyed
    result = client(httpclient, cached_visual_search).infer(case, infer_inputs(httpclient, feeds, binary=False))
    second = {name: result.as_numpy(name) for name in first}
    after = cache_counts(cached_visual_search)
    assert after.get("miss", 0) - before.get("miss", 0) == 16
    assert after.get("hit", 0) - before.get("hit", 0) == 16
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    # 8 cached rows + 8 new ones, in an interleaved order
    fresh = inputs(case, 8, seed=22)
    mixed = {"image": np.concatenate([feeds["image"][:8], fresh["image"]])[[0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15]]}
    answer = online(cached_visual_search, case, mixed)
    uncached = online(kserve_servers[case].http, case, mixed)
    final = cache_counts(cached_visual_search)
    assert final["hit"] - after["hit"] == 8 and final["miss"] - after["miss"] == 8
    for name in answer:
        np.testing.assert_allclose(answer[name], uncached[name], rtol=1e-6, atol=1e-6, err_msg=name)


VERSION_SCRIPT = """
import asyncio, json, sys
import numpy as np
from mlsd_predictors.servers._registry import model_class
from mlsd_predictors.servers._signature import RawTensor, check_inputs
v1, v2, rows = sys.argv[1], sys.argv[2], np.load(sys.argv[3])["image"]
def feeds(model):
    return check_inputs([RawTensor("image", "FP32", list(rows.shape), lambda: rows)], model.signature)
async def main():
    cls = model_class("visual-search")
    model = cls("visual-search", v1, workers=0, cache_size=100, cache_ttl_s=600)
    model.load()
    a = await model.cache.run(feeds(model), model.batcher.submit)
    model.model_dir = __import__("pathlib").Path(v2)
    model.load()                                  # a new version in the same process
    b = await model.cache.run(feeds(model), model.batcher.submit)
    fresh = cls("visual-search-fresh", v2, workers=0)
    fresh.load()
    c = fresh.compute(feeds(fresh))
    print(json.dumps({"v1_equals_v2": bool(np.array_equal(a["neighbour_scores"], b["neighbour_scores"])),
                      "v2_equals_fresh": bool(np.allclose(b["neighbour_scores"], c["neighbour_scores"], atol=1e-6)),
                      "entries_after_reload": len(model.cache)}))
asyncio.run(main())
"""


def test_a_version_change_never_serves_the_previous_versions_answers(models_root, tmp_path):
    """In-process (the reload path a replica would take), in a subprocess: this test process must not
    import kserve next to tritonclient.grpc."""
    from mlsd_predictors.build import BuildOptions, build_case_study

    case = "visual-search"
    if not (models_root / case / "2" / "model-card.json").is_file():
        build_case_study(case, BuildOptions(version=2, out=models_root, small=True, seed=5, overwrite=True))
    np.save(tmp_path / "rows.npy", inputs(case, 6, seed=3)["image"])
    np.savez(tmp_path / "rows.npz", image=inputs(case, 6, seed=3)["image"])
    result = subprocess.run([sys.executable, "-c", VERSION_SCRIPT, str(models_root / case / "1" / "kserve" / "fp32"),
                             str(models_root / case / "2" / "kserve" / "fp32"), str(tmp_path / "rows.npz")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"v1_equals_v2": False, "v2_equals_fresh": True, "entries_after_reload": 6}


# -- drift series ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["ad-click-prediction", "visual-search", "harmful-content", "video-recommendation"])
def test_drift_series_carry_the_card_references_and_count_every_row(case, models_root, kserve_servers):
    card = json.loads((models_root / case / "1" / "kserve" / "fp32" / "model-card.json").read_text())
    references = card["referenceDistribution"]
    endpoint = kserve_servers[case]
    text = metrics(endpoint.metrics)
    for feature, histogram in references.items():
        exported = by_label(samples(text, "mlsd_drift_reference_fraction", feature=feature), "bin")
        assert [exported[str(b)] for b in range(len(histogram["fractions"]))] == pytest.approx(histogram["fractions"])
    before = {f: sum(samples(text, "mlsd_drift_observations_total", feature=f).values()) for f in references}
    online(endpoint.http, case, inputs(case, 40, seed=4))
    text = metrics(endpoint.metrics)
    after = {f: sum(samples(text, "mlsd_drift_observations_total", feature=f).values()) for f in references}
    for feature in references:
        per_row = 1
        if feature == "output:score":               # every retrieved candidate's score
            per_row = card["training"]["candidates"]
        assert after[feature] - before[feature] == 40 * per_row, feature


def test_in_distribution_traffic_bins_like_the_held_out_data(models_root, kserve_servers):
    """Rows drawn from the same synthetic world as the build's held-out data (seed 0): every input
    feature's live histogram must match the card's reference (PSI < 0.05), which holds only if the
    predictor's binning and transform are the build's."""
    from mlsd_operator.rollout import psi_against_reference
    from mlsd_predictors.casestudies._ad_click_prediction import Generator
    from mlsd_predictors.casestudies._training import seeded

    case = "ad-click-prediction"
    card = json.loads((models_root / case / "1" / "kserve" / "fp32" / "model-card.json").read_text())
    assert card["dataSeed"] == 0
    world = Generator(seeded(0))
    sparse, dense, _, _ = world.sample(3000, np.random.default_rng(99))
    endpoint = kserve_servers[case]
    before = samples(metrics(endpoint.metrics), "mlsd_drift_observations_total")
    for start in range(0, 3000, 60):
        online(endpoint.http, case, {"sparse_ids": sparse[start:start + 60], "dense": dense[start:start + 60]})
    after = samples(metrics(endpoint.metrics), "mlsd_drift_observations_total")
    for feature, histogram in card["referenceDistribution"].items():
        if not feature.startswith("input:"):
            continue
        counts = [0.0] * len(histogram["fractions"])
        for labels, value in after.items():
            found = dict(labels)
            if found["feature"] == feature:
                counts[int(found["bin"])] += value - before.get(labels, 0.0)
        assert sum(counts) == 3000
        assert psi_against_reference(histogram["fractions"], counts) < 0.05, feature
