"""The KServe `Model` every case study builds on: card -> signature -> checked inputs -> batched
onnxruntime -> case-specific outputs, with the mlsd metrics around each stage.

A request arrives in one of three forms and leaves in the matching one:
- `DecodedRequest` from our v2 REST route (`_server.py`), answered with a result dict the route encodes;
- KServe's `InferRequest` (v2 gRPC), answered with an `InferResponse`;
- a dict (v1 REST `{"instances": [...]}`), answered with `{"predictions": [...]}`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
import orjson
from kserve import Model
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from tritonclient.utils import np_to_triton_dtype

from mlsd_contract.metrics import STAGES

from . import _metrics
from ._batcher import MicroBatcher
from ._cache import PredictionCache
from ._card import inline_compute, load_servable, request_signature
from ._codec import DecodedRequest, RequestedOutput, select_outputs
from ._drift import DriftMonitor
from ._errors import MalformedRequest, ServingError, UnknownInput
from ._signature import RawTensor, Signature, TensorSpec, check_inputs


def _v1_tensors(body: Mapping[str, Any], signature: Signature) -> list[RawTensor]:
    instances = body.get("instances", body.get("inputs"))
    if not isinstance(instances, list) or not instances:
        raise MalformedRequest("instances", "a non-empty list of instances is required")
    names = [spec.name for spec in signature.inputs]
    if len(names) == 1 and not all(isinstance(i, dict) for i in instances):
        rows = {names[0]: instances}
    else:
        if not all(isinstance(i, dict) for i in instances):
            raise MalformedRequest("instances", f"each instance must be an object with {', '.join(names)}")
        rows = {}
        for j, instance in enumerate(instances):
            for key in instance:
                if key not in names:
                    raise UnknownInput(f"instances[{j}].{key}", f"unknown input {key!r}; this model takes "
                                       f"{', '.join(names)}")
            for name in names:
                rows.setdefault(name, []).append(instance.get(name))
    tensors = []
    for spec in signature.inputs:
        values = rows.get(spec.name)

        def decode(values=values, spec=spec) -> np.ndarray:
            try:
                return np.asarray(values, dtype=spec.numpy_dtype)
            except (ValueError, TypeError, OverflowError) as err:
                raise MalformedRequest(f"instances.{spec.name}", f"cannot read as {spec.datatype}: {err}") from err

        shape = [len(instances), *spec.shape] if values is not None else None
        tensors.append(RawTensor(spec.name, spec.datatype if values is not None else None, shape, decode))
    return [t for t in tensors if t.shape is not None]


def _grpc_tensors(request: InferRequest) -> list[RawTensor]:
    return [RawTensor(i.name, i.datatype, list(i.shape), i.as_numpy) for i in request.inputs]


class CaseStudyModel(Model):
    """One case study's predictor; subclasses implement `setup`, `compute` and `scores`."""

    case_study: ClassVar[str]
    outputs: ClassVar[tuple[TensorSpec, ...]]
    """What the predictor returns: the Triton entry model's outputs first, then KServe-only extras."""
    request_graph: ClassVar[str] = "model"
    """The graph (card role) whose inputs a request carries."""
    input_bounds: ClassVar[dict[str, tuple[float | None, float | None]]] = {}
    """Value bounds the card does not state but the graph relies on (ids >= 0, counts >= 0)."""

    def __init__(self, name: str, model_dir: str | Path, *, track: str | None = None,
                 max_batch_size: int | None = None, max_latency_ms: float = 0.0,
                 ort_threads: int = 0, workers: int = -1, cache_size: int | None = None,
                 cache_ttl_s: float | None = None) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.track = track or os.environ.get("MLSD_TRACK", "stable")
        self.max_batch_size = max_batch_size
        self.max_latency_ms = max_latency_ms
        self.ort_threads = ort_threads
        self.workers = workers
        # spec.cache reaches the pod as MLSD_CACHE_SIZE / MLSD_CACHE_TTL_SECONDS (0 or unset: no cache).
        self.cache_size = cache_size if cache_size is not None else int(os.environ.get("MLSD_CACHE_SIZE", "0"))
        self.cache_ttl_s = cache_ttl_s if cache_ttl_s is not None else float(
            os.environ.get("MLSD_CACHE_TTL_SECONDS", "600"))
        self.cache: PredictionCache | None = None
        self.series = _metrics.default_series()

    # -- lifecycle ---------------------------------------------------------------------------------

    def load(self) -> bool:
        self.card = load_servable(self.model_dir)
        if self.card.case_study != self.case_study:
            raise ValueError(f"{self.model_dir} holds a {self.card.case_study} model, not {self.case_study}")
        self.setup()   # sets graphs, auxiliary files and, where they depend on the card, `outputs`
        signature = request_signature(self.card, self.request_graph, self.outputs, self.max_batch_size)
        self.signature = dataclasses.replace(signature, inputs=tuple(
            dataclasses.replace(spec, minimum=self.input_bounds[spec.name][0], maximum=self.input_bounds[spec.name][1])
            if spec.name in self.input_bounds else spec for spec in signature.inputs))
        self.version = str(self.card.version)
        self.labels = {"model": self.name, "version": self.version, "track": self.track,
                       "case_study": self.case_study}
        workers = self.workers if self.workers >= 0 else (0 if inline_compute(self.card) else 1)
        self.batcher = MicroBatcher(self.compute, max_batch_size=self.signature.max_batch_size,
                                    max_latency_ms=self.max_latency_ms, workers=workers,
                                    on_batch=self.series.batch.labels(**self.labels).observe)
        self.series.info.labels(**self.labels, precision=self.card.precision, runtime="kserve").set(1)
        for stage in STAGES:   # export every series from the start, not after first traffic
            self.series.duration.labels(**self.labels, stage=stage)
        # Children resolved once: a label lookup per metric per request adds up on small models.
        self._inflight = self.series.inflight.labels(**self.labels)
        self._stage = {stage: self.series.duration.labels(**self.labels, stage=stage) for stage in STAGES}
        self._ok = self.series.requests.labels(**self.labels, code="200")
        # A new cache per load: its keys carry the version too, so nothing cached survives a version change.
        self.cache = PredictionCache(
            size=self.cache_size, ttl_seconds=self.cache_ttl_s,
            identity=f"{self.name}|{self.case_study}|{self.version}|{self.card.precision}",
            hits=self.series.cache.labels(**self.labels, result="hit"),
            misses=self.series.cache.labels(**self.labels, result="miss"),
            entries=self.series.cache_entries.labels(**self.labels)) if self.cache_size > 0 else None
        self.drift = DriftMonitor(self.card.reference_distribution, self.series.drift, self.series.drift_reference,
                                  self.labels)
        self.ready = True
        return self.ready

    def stop(self) -> None:
        if hasattr(self, "batcher"):
            self.batcher.close()
        super().stop()

    def count_rejected(self, err: ServingError) -> None:
        """A request refused before it reached `__call__` (undecodable body)."""
        self.series.errors.labels(**self.labels, reason=err.code).inc()
        self.series.requests.labels(**self.labels, code=str(int(err.http_status))).inc()

    def session(self, file: str) -> ort.InferenceSession:
        """The graph `file`, refused (RepositoryError) if it does not load or does not match the card."""
        from ._integrity import checked_session

        return checked_session(self.model_dir, file, self.card, self.ort_threads)

    # -- what a case study provides ----------------------------------------------------------------

    def setup(self) -> None:
        """Loads graphs and auxiliary files from `self.model_dir` (called once in `load`)."""
        raise NotImplementedError

    def compute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Batch in, named batch-major outputs out (runs on a worker thread)."""
        raise NotImplementedError

    def scores(self, results: dict[str, np.ndarray]) -> Sequence[tuple[str, np.ndarray]]:
        """(output label, scores) pairs for the `mlsd_prediction_score` histogram."""
        return ()

    def drift_values(self, feeds: dict[str, np.ndarray], results: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Monitored values per row, named like the card's reference distributions
        (`input:<feature>`, `output:<score>`) and computed exactly as `mlsd build` computed them."""
        return {}

    def get_input_types(self) -> list[dict]:
        return [spec.to_metadata() for spec in self.signature.inputs]

    def get_output_types(self) -> list[dict]:
        return [spec.to_metadata() for spec in self.signature.outputs]

    # -- the request path --------------------------------------------------------------------------

    async def __call__(self, body: Any, headers: dict[str, str] | None = None,
                       verb: InferenceVerb = InferenceVerb.PREDICT) -> tuple[Any, dict[str, str]]:
        labels, series = self.labels, self.series
        self._inflight.inc()
        start = time.perf_counter()
        code = "200"
        try:
            feeds = self.preprocess_any(body)
            t1 = time.perf_counter()
            if self.cache is None:
                results = await self.batcher.submit(feeds)
            else:
                results = await self.cache.run(feeds, self.batcher.submit)
            t2 = time.perf_counter()
            self.drift.observe(self.drift_values(feeds, results))
            response = self.postprocess_any(body, results)
            t3 = time.perf_counter()
            for stage, seconds in (("preprocess", t1 - start), ("predict", t2 - t1), ("postprocess", t3 - t2)):
                self._stage[stage].observe(seconds)
            return response, {}
        except ServingError as err:
            code = str(int(err.http_status))
            series.errors.labels(**labels, reason=err.code).inc()
            raise
        except Exception:
            code = "500"
            series.errors.labels(**labels, reason="internal").inc()
            raise
        finally:
            self._inflight.dec()
            (self._ok if code == "200" else series.requests.labels(**labels, code=code)).inc()
            self._stage["total"].observe(time.perf_counter() - start)

    def preprocess_any(self, body: Any) -> dict[str, np.ndarray]:
        if isinstance(body, DecodedRequest):
            tensors = body.inputs
        elif isinstance(body, InferRequest):
            tensors = _grpc_tensors(body)
        elif isinstance(body, (bytes, dict)):   # v1 REST; bytes when the client sent no JSON content-type
            if isinstance(body, bytes):
                try:
                    body = orjson.loads(body)
                except orjson.JSONDecodeError as err:
                    raise MalformedRequest("body", f"not valid JSON: {err}") from err
                if not isinstance(body, dict):
                    raise MalformedRequest("body", "the request must be a JSON object")
            tensors = _v1_tensors(body, self.signature)
        else:
            raise MalformedRequest("body", f"unsupported request type {type(body).__name__}")
        return check_inputs(tensors, self.signature)

    def postprocess_any(self, body: Any, results: dict[str, np.ndarray]) -> Any:
        for label, values in self.scores(results):
            _metrics.observe_scores(self.series.score, self.labels, label, values)
        if isinstance(body, DecodedRequest):
            return results
        if isinstance(body, InferRequest):
            requested = None
            if body.request_outputs:
                requested = [RequestedOutput(o.name, True) for o in body.request_outputs]
            chosen = select_outputs(results, requested, True)
            outputs = []
            for o in chosen:
                array = np.ascontiguousarray(results[o.name])
                output = InferOutput(o.name, list(array.shape), np_to_triton_dtype(array.dtype))
                output.set_data_from_numpy(array, binary_data=True)   # raw bytes, no list round trip
                output.parameters = None
                outputs.append(output)
            return InferResponse(response_id=body.id or "", model_name=self.name, infer_outputs=outputs,
                                 from_grpc=body.from_grpc, use_binary_outputs=True,
                                 model_version=self.version)
        rows = len(next(iter(results.values())))
        return {"predictions": [{name: value[i].tolist() for name, value in results.items()} for i in range(rows)]}
