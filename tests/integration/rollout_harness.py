"""Real parts for progressive-delivery tests: a Prometheus server, KServe predictor servers on
loopback, a shifted (deliberately bad) model variant, and a traffic generator that splits requests
the way the route says."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from tests._support import free_port, stop_process, wait_http

HOST = "127.0.0.1"
CASE = "ad-click-prediction"


def build_models(out: Path) -> Path:
    """Ad-click versions 1 and 2 (different seeds: a good canary), small size."""
    from mlsd_predictors.build import BuildOptions, build_case_study

    for version in (1, 2):
        if not (out / CASE / str(version) / "model-card.json").is_file():
            build_case_study(CASE, BuildOptions(version=version, out=out, small=True, seed=version - 1, overwrite=True))
    return out


def shifted_variant(source: Path, target: Path, version: int | None = None) -> Path:
    """A copy of a served variant whose probabilities are pushed up (p -> p^(1/4)): same signature,
    healthy latency and no errors, but miscalibrated, as a bad retrain would be."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    shift_probabilities(target / "model.onnx")
    rerecord_self_check(target)
    if version is not None:           # served (and labelled) as another version
        card = json.loads((target / "model-card.json").read_text())
        card["version"] = version
        (target / "model-card.json").write_text(json.dumps(card))
    return target


def shift_probabilities(graph: Path) -> None:
    """Rewrites an ONNX graph in place so that its first output p becomes p^(1/4)."""
    model = onnx.load(str(graph))
    output = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{o}_raw" if o == output else o for o in node.output]
    model.graph.node.extend([helper.make_node("Sqrt", [f"{output}_raw"], [f"{output}_sqrt"]),
                             helper.make_node("Sqrt", [f"{output}_sqrt"], [output])])
    onnx.checker.check_model(model)
    onnx.save(model, str(graph))


def rerecord_self_check(variant: Path) -> None:
    """Records the edited model's own outputs on the self-check rows, as `mlsd build` would have for
    a model that really was trained this way (otherwise the predictor refuses it at load, rightly)."""
    card = json.loads((variant / "model-card.json").read_text())
    rows = variant / card["selfCheck"]["file"]
    with np.load(rows) as golden:
        arrays = {k: golden[k] for k in golden.files}
    for file in card["selfCheck"]["tolerance"]:
        session = ort.InferenceSession(str(variant / file), providers=["CPUExecutionProvider"])
        feeds = {k.split("|", 2)[2]: v for k, v in arrays.items() if k.startswith(f"{file}|in|")}
        names = [o.name for o in session.get_outputs()]
        arrays.update({f"{file}|out|{n}": v for n, v in zip(names, session.run(None, feeds), strict=True)})
    np.savez(rows, **arrays)


def infer(address: str, rows: int, rng: np.random.Generator) -> int:
    """One v2 REST request of `rows` ad-click rows; the HTTP status."""
    body = {"inputs": [
        {"name": "sparse_ids", "datatype": "INT64", "shape": [rows, 8],
         "data": rng.integers(0, 1_000_000, size=rows * 8).tolist()},
        {"name": "dense", "datatype": "FP32", "shape": [rows, 6],
         "data": rng.lognormal(1.0, 1.0, size=rows * 6).round(4).tolist()},
    ]}
    request = urllib.request.Request(f"http://{address}/v2/models/{CASE}/infer", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


class PrometheusServer:
    """Debian's prometheus, scraping every second the targets written to a file_sd file."""

    def __init__(self, work: Path):
        self.work = work
        self.port = free_port()
        self.targets = work / "targets.json"
        self.honoring_targets = work / "targets-honor-labels.json"
        for path in (self.targets, self.honoring_targets):
            path.write_text("[]")
        (work / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "mlsd", "file_sd_configs": [{"files": [str(self.targets)], "refresh_interval": "1s"}]},
                # The operator's state series name the ModelDeployment's namespace: kept, as the
                # chart's ServiceMonitor keeps them (honorLabels).
                {"job_name": "mlsd-operator", "honor_labels": True,
                 "file_sd_configs": [{"files": [str(self.honoring_targets)], "refresh_interval": "1s"}]},
            ],
        }))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> "PrometheusServer":
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found: run hack/install-test-deps.sh (apt-get install prometheus)")
        log = open(self.work / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={self.work / 'prometheus.yml'}", f"--storage.tsdb.path={self.work / 'tsdb'}",
             f"--web.listen-address={HOST}:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"{self.url}/-/ready", self.process, self.work / "prometheus.log", timeout=60)
        return self

    def scrape(self, targets: list[tuple[str, dict[str, str]]], *, honor_labels: bool = False) -> None:
        entries = [{"targets": [address], "labels": labels} for address, labels in targets]
        path = self.honoring_targets if honor_labels else self.targets
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        tmp.replace(path)        # atomic: Prometheus never reads half a file

    def query(self, promql: str) -> dict:
        """The HTTP API's answer (`status`, `data` or `error`), also for a query that does not parse."""
        data = urllib.parse.urlencode({"query": promql}).encode()
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query", data=data, timeout=10) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as error:      # 400 bad_data: the error names the parse failure
            return json.loads(error.read())

    def wait_scraped(self, address: str, metric: str, timeout: float = 30) -> None:
        """Until `metric` from `address` is in the TSDB: traffic sent before that would be the first
        sample of its series, which increase() cannot count."""
        query = urllib.parse.urlencode({"query": f'{metric}{{instance="{address}"}}'}).encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/api/v1/query", data=query, timeout=5) as reply:
                if json.loads(reply.read())["data"]["result"]:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"Prometheus has not scraped {metric} from {address} after {timeout}s")

    def stop(self) -> None:
        stop_process(self.process, group=True)


class Predictor:
    """`python -m mlsd_predictors.servers.kserve` on loopback, as the ServingRuntime runs it."""

    def __init__(self, model_dir: Path, track: str, work: Path):
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log = work / f"predictor-{track}-{self.http_port}.log"
        command = [sys.executable, "-m", "mlsd_predictors.servers.kserve", f"--case_study={CASE}",
                   f"--model_name={CASE}", f"--model_dir={model_dir}", f"--host={HOST}",
                   f"--http_port={self.http_port}", f"--grpc_port={self.grpc_port}", f"--track={track}",
                   "--ort_threads=1"]
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"http://{HOST}:{self.http_port}/v2/models/{CASE}/ready", self.process, self.log, timeout=120)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.http_port}"

    scrape_address = address           # /metrics is on the HTTP port

    def infer(self, rows: int, rng: np.random.Generator) -> int:
        return infer(self.address, rows, rng)

    def stop(self) -> None:
        stop_process(self.process, group=True)


class TritonPredictor:
    """A real tritonserver (the pytriton wheel's, as `mlsd serve` and the project's Triton image run
    it) on one version's Triton repository, on loopback. It exports no mlsd_* request series: the
    analysis reads its own nv_* series and the Python-backend shim's score histograms, scraped from
    its metrics port."""

    def __init__(self, repository: Path, track: str, work: Path):
        from mlsd_predictors.servers._triton import TritonServer

        self.server = TritonServer([repository], free_port(), free_port(), free_port(), host=HOST,
                                   log_path=work / f"triton-{track}-{free_port()}.log", env={"MLSD_TRACK": track})
        self.server.start(240)

    @property
    def address(self) -> str:
        return self.server.http_url

    @property
    def scrape_address(self) -> str:
        return f"{HOST}:{self.server.metrics_port}"

    def infer(self, rows: int, rng: np.random.Generator) -> int:
        return infer(self.address, rows, rng)

    def stop(self) -> None:
        self.server.stop()


class Traffic(threading.Thread):
    """Sends requests at a bounded rate, to the canary with probability `share()`/100, like the
    HTTPRoute's weights would; stops by itself after `max_seconds`."""

    def __init__(self, stable: Predictor, canary: Predictor | None, share, rate: float = 40.0,
                 max_seconds: float = 240, mirror: Predictor | None = None):
        super().__init__(daemon=True)
        self.stable, self.canary, self.share, self.mirror = stable, canary, share, mirror
        self.rate, self.max_seconds = rate, max_seconds
        self.stop_flag = threading.Event()
        self.sent = {"stable": 0, "canary": 0, "mirror": 0}

    def run(self) -> None:
        rng = np.random.default_rng(7)
        chooser = random.Random(7)
        started = time.monotonic()
        share, share_read = 0, 0.0
        while not self.stop_flag.is_set() and time.monotonic() - started < self.max_seconds:
            if time.monotonic() - share_read > 0.5:
                share, share_read = self.share(), time.monotonic()
            target = "canary" if self.canary and chooser.random() * 100 < share else "stable"
            state = rng.bit_generator.state
            (self.canary if target == "canary" else self.stable).infer(4, rng)
            self.sent[target] += 1
            if self.mirror is not None and target == "stable":     # the same request, response discarded
                rng.bit_generator.state = state
                self.mirror.infer(4, rng)
                self.sent["mirror"] += 1
            time.sleep(1.0 / self.rate)

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(15)


class Evidence:
    """Real requests for suites that walk canaries without judging them (the fault and security
    suites): a KServe predictor per version (ad-click v1 and v2) under steady load, scraped once per
    (namespace, ModelDeployment, version) the suite registers, so every canary's analysis sees the
    requests a canary must have served before it may pass."""

    def __init__(self, models: Path, prometheus: PrometheusServer, work: Path, rate: float = 20.0):
        self.prometheus = prometheus
        self.stable = Predictor(models / CASE / "1" / "kserve" / "fp32", "stable", work)
        self.canary = Predictor(models / CASE / "2" / "kserve" / "fp32", "canary", work)
        self.targets: list[tuple[str, dict[str, str]]] = []
        self.traffic = Traffic(self.stable, self.canary, lambda: 50, rate=rate, max_seconds=4 * 3600)
        self.traffic.start()

    def register(self, namespace: str, name: str) -> None:
        for version, predictor in (("1", self.stable), ("2", self.canary)):
            self.targets.append((predictor.address, {"namespace": namespace, "model_deployment": name,
                                                     "version": version}))
        self.prometheus.scrape(self.targets)

    def stop(self) -> None:
        self.traffic.stop()
        self.stable.stop()
        self.canary.stop()
