"""The local front door: what the Gateway (Triton runtime) or KServe's ingress does in a cluster.

- Traffic split: each v2 infer request goes to stable or canary by weight. Envoy draws a weighted
  random backend per request; we use smooth weighted round-robin (nginx's), which gives the same
  long-run shares with no variance, so a short local run already shows the configured split.
- Mirroring: a `percent` share of infer requests is also sent to the shadow track, after the
  client's answer is on its way; the shadow's answer is discarded (only counted), as the HTTPRoute
  RequestMirror filter does. Agreement is measured: the largest |shadow - served| of each float
  output goes into `mlsd_shadow_abs_difference{version,output}`.
- Other v2 endpoints (health, metadata) answer from the stable track; `/metrics` merges every
  track's series, each sample labelled with its `track` (and `version`) where it did not say.
- gRPC: the same split and mirroring for `ModelInfer`, as opaque bytes (no decoding on the way).
- Admission: at most `max_inflight` infer requests are forwarded at once (HTTP and gRPC together);
  beyond that a request is answered at once with 503 + Retry-After (gRPC RESOURCE_EXHAUSTED), never
  queued. The HTTP client's pool has a connection for every admitted request, so nothing waits in
  it: a pool that queues thousands of requests is where an earlier front door wedged under an
  open-loop burst (httpcore re-scans its whole queue on every event). Mirrors have their own,
  smaller budget and are dropped (counted) when it is spent: a shadow never slows the served path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import httpx
import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._backends import Backend

log = logging.getLogger("mlsd.serve")
FORWARDED_HEADERS = ("content-type", "inference-header-content-length", "accept", "x-request-id")
RETURNED_HEADERS = ("content-type", "inference-header-content-length")
GRPC_SERVICE = "/inference.GRPCInferenceService/"
AGREEMENT_BUCKETS = (0.0, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)


def rest_outputs(body: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """Output tensors of a v2 REST infer response (JSON or binary), for comparing tracks; {} if unreadable."""
    try:
        length = int(header_length) if header_length else len(body)
        document = orjson.loads(body[:length])
        out, offset = {}, length
        for tensor in document.get("outputs", []):
            dtype = np.dtype(_NP.get(tensor["datatype"], "V"))
            size = (tensor.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                data = np.frombuffer(body[offset:offset + size], dtype=dtype)
                offset += size
            else:
                data = np.asarray(tensor["data"], dtype=dtype)
            out[tensor["name"]] = data.reshape(tensor["shape"])
        return out
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return {}


def grpc_outputs(payload: bytes) -> dict[str, np.ndarray]:
    """Output tensors of a serialized ModelInferResponse with raw contents; {} if unreadable."""
    from tritonclient.grpc import service_pb2   # the front door never imports kserve's protos

    try:
        response = service_pb2.ModelInferResponse.FromString(payload)
        return {t.name: np.frombuffer(raw, dtype=np.dtype(_NP.get(t.datatype, "V"))).reshape(list(t.shape))
                for t, raw in zip(response.outputs, response.raw_output_contents, strict=True)}
    except (ValueError, TypeError):
        return {}


_NP = {"FP32": "float32", "FP64": "float64", "FP16": "float16", "INT64": "int64", "INT32": "int32", "BOOL": "bool"}


class WeightedRoundRobin:
    """Smooth weighted round-robin: over any window of sum(weights) picks, exact shares."""

    def __init__(self, weights: dict[str, int]) -> None:
        self.weights = {k: w for k, w in weights.items() if w > 0}
        self.current = dict.fromkeys(self.weights, 0)
        self.total = sum(self.weights.values())

    def pick(self) -> str:
        for key, weight in self.weights.items():
            self.current[key] += weight
        best = max(self.current, key=self.current.__getitem__)
        self.current[best] -= self.total
        return best


class Mirror:
    """Mirrors `percent` of requests, evenly spread (an error-diffusion counter)."""

    def __init__(self, percent: int) -> None:
        self.percent = percent
        self.credit = 0

    def take(self) -> bool:
        self.credit += self.percent
        if self.credit >= 100:
            self.credit -= 100
            return True
        return False


@dataclass
class Routing:
    primary: dict[str, Backend]       # track -> backend (stable, canary)
    shadow: Backend | None
    split: WeightedRoundRobin
    mirror: Mirror | None

    @classmethod
    def of(cls, backends: Sequence[Backend]) -> Routing:
        primary = {b.track.name: b for b in backends if b.track.name != "shadow"}
        shadow = next((b for b in backends if b.track.name == "shadow"), None)
        split = WeightedRoundRobin({name: b.track.percent for name, b in primary.items()})
        return cls(primary, shadow, split, Mirror(shadow.track.percent) if shadow else None)

    def choose(self) -> Backend:
        return self.primary[self.split.pick()]

    def mirror_to(self) -> Backend | None:
        return self.shadow if self.mirror is not None and self.mirror.take() else None


DEFAULT_MAX_INFLIGHT = 64
RETRY_AFTER_SECONDS = 1


class Admission:
    """A non-blocking in-flight budget: `enter()` is False when it is spent (the caller sheds)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max in-flight must be at least 1, got {limit}")
        self.limit = limit
        self.inflight = 0

    def enter(self) -> bool:
        if self.inflight >= self.limit:
            return False
        self.inflight += 1
        return True

    def leave(self) -> None:
        self.inflight -= 1


class FrontDoorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.shed = Counter("mlsd_frontdoor_shed_requests", "Infer requests answered 503 at once: the front door "
                            "was at its in-flight limit.", ("protocol",), registry=self.registry)
        self.routed = Counter("mlsd_frontdoor_requests", "Infer requests routed by the front door.",
                              ("track", "version", "protocol", "code"), registry=self.registry)
        self.mirrored = Counter("mlsd_frontdoor_mirrored_requests", "Infer requests mirrored to the shadow.",
                                ("track", "version", "protocol", "outcome"), registry=self.registry)
        self.disagreement = Histogram(
            "mlsd_shadow_abs_difference", "Largest |shadow - served| per float output and mirrored request.",
            ("version", "output"), buckets=AGREEMENT_BUCKETS, registry=self.registry)

    def compare(self, version: str, served: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> None:
        for name, value in served.items():
            other = shadow.get(name)
            if other is None or other.shape != value.shape or value.dtype.kind != "f" or value.size == 0:
                continue
            self.disagreement.labels(version, name).observe(float(np.max(np.abs(other - value))))


def _label_family(family: Metric, track: str, version: str) -> Metric:
    for sample in family.samples:
        sample.labels.setdefault("track", track)
        sample.labels.setdefault("version", version)
    return family


class _Merged:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)


async def merged_metrics(client: httpx.AsyncClient, backends: Sequence[Backend], own: CollectorRegistry) -> bytes:
    families: dict[str, Metric] = {}

    async def fetch(backend: Backend) -> str:
        try:
            return (await client.get(backend.metrics_url, timeout=5)).text
        except httpx.HTTPError:
            return ""

    texts = await asyncio.gather(*(fetch(b) for b in backends))
    for backend, text in zip(backends, texts, strict=True):
        for family in text_string_to_metric_families(text):
            family = _label_family(family, backend.track.name, backend.track.version)
            if family.name in families:
                families[family.name].samples.extend(family.samples)
            else:
                families[family.name] = family
    registry = CollectorRegistry()
    registry.register(_Merged(list(families.values())))
    return generate_latest(registry) + generate_latest(own)


def http_app(backends: Sequence[Backend], routing: Routing, metrics: FrontDoorMetrics,
             admission: Admission | None = None) -> Starlette:
    admission = admission or Admission(DEFAULT_MAX_INFLIGHT)
    mirrors = Admission(max(1, admission.limit // 4))
    connections = admission.limit + mirrors.limit + 8          # + health, metadata and metrics calls
    client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, pool=5.0),
                               limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))
    stable = routing.primary["stable"]
    background: set[asyncio.Task] = set()

    def forwarded(request: Request) -> dict[str, str]:
        return {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}

    async def mirror(target: Backend, path: str, body: bytes, headers: dict[str, str], served: httpx.Response) -> None:
        try:
            response = await client.post(f"{target.http_url}{path}", content=body, headers=headers)
            outcome = "ok" if response.status_code < 400 else f"http_{response.status_code}"
        except httpx.HTTPError:
            outcome = "unreachable"
        finally:
            mirrors.leave()
        metrics.mirrored.labels("shadow", target.track.version, "http", outcome).inc()
        if outcome == "ok" and served.status_code == 200:
            length = "inference-header-content-length"
            metrics.compare(target.track.version, rest_outputs(served.content, served.headers.get(length)),
                            rest_outputs(response.content, response.headers.get(length)))

    async def infer(request: Request) -> Response:
        if not admission.enter():
            metrics.shed.labels("http").inc()
            return JSONResponse({"error": f"front door at capacity ({admission.limit} requests in flight): "
                                          "retry later"},
                                status_code=503, headers={"retry-after": str(RETRY_AFTER_SECONDS)})
        try:
            body = await request.body()
            headers = forwarded(request)
            target = routing.choose()
            path = request.url.path
            try:
                response = await client.post(f"{target.http_url}{path}", content=body, headers=headers)
            except httpx.HTTPError as err:
                metrics.routed.labels(target.track.name, target.track.version, "http", "502").inc()
                return JSONResponse({"error": f"{target.track.name} track unreachable: {err}"}, status_code=502)
        finally:
            admission.leave()
        metrics.routed.labels(target.track.name, target.track.version, "http", str(response.status_code)).inc()
        shadow = routing.mirror_to()
        if shadow is not None and not mirrors.enter():
            metrics.mirrored.labels("shadow", shadow.track.version, "http", "dropped").inc()
            shadow = None
        if shadow is not None:
            task = asyncio.get_running_loop().create_task(mirror(shadow, path, body, headers, response))
            background.add(task)
            task.add_done_callback(background.discard)
        out_headers = {k: v for k, v in response.headers.items() if k.lower() in RETURNED_HEADERS}
        out_headers.update({"x-mlsd-track": target.track.name, "x-mlsd-version": target.track.version})
        return Response(response.content, status_code=response.status_code, headers=out_headers)

    async def to_stable(request: Request) -> Response:
        response = await client.request(request.method, f"{stable.http_url}{request.url.path}",
                                        content=await request.body(), headers=forwarded(request))
        out_headers = {k: v for k, v in response.headers.items() if k.lower() in RETURNED_HEADERS}
        return Response(response.content, status_code=response.status_code, headers=out_headers)

    async def ready(request: Request) -> Response:
        checks = await asyncio.gather(*(client.get(f"{b.http_url}/v2/health/ready") for b in backends),
                                      return_exceptions=True)
        ok = all(not isinstance(c, BaseException) and c.status_code == 200 for c in checks)
        return Response(status_code=200 if ok else 503)

    async def live(request: Request) -> Response:
        return Response(status_code=200)

    async def metrics_endpoint(request: Request) -> Response:
        payload = await merged_metrics(client, backends, metrics.registry)
        return Response(payload, media_type="text/plain; version=0.0.4; charset=utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        if background:
            await asyncio.wait(background, timeout=5)
        await client.aclose()

    return Starlette(routes=[
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        Route("/v2/models/{model}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v2/health/ready", ready),
        Route("/v2/health/live", live),
        Route("/metrics", metrics_endpoint),
        Route("/v2", to_stable),
        Route("/v2/{rest:path}", to_stable, methods=["GET", "POST"]),
    ], lifespan=lifespan)


class GrpcFrontDoor:
    """Forwards the v2 gRPC service as raw bytes; ModelInfer is split and mirrored."""

    def __init__(self, routing: Routing, metrics: FrontDoorMetrics, admission: Admission | None = None) -> None:
        self.routing = routing
        self.metrics = metrics
        self.admission = admission or Admission(DEFAULT_MAX_INFLIGHT)
        self.mirrors = Admission(max(1, self.admission.limit // 4))
        self.channels = {b.track.name: grpc.aio.insecure_channel(b.grpc_target)
                         for b in [*routing.primary.values(), *([routing.shadow] if routing.shadow else [])]}
        self.background: set[asyncio.Task] = set()

    def _call(self, track: str, method: str):
        return self.channels[track].unary_unary(method, request_serializer=None, response_deserializer=None)

    async def _mirror(self, backend: Backend, method: str, request: bytes, metadata, served: bytes) -> None:
        try:
            response = await self._call(backend.track.name, method)(request, metadata=metadata, timeout=60)
            outcome = "ok"
        except grpc.aio.AioRpcError as err:
            outcome = err.code().name.lower()
        finally:
            self.mirrors.leave()
        self.metrics.mirrored.labels("shadow", backend.track.version, "grpc", outcome).inc()
        if outcome == "ok":
            self.metrics.compare(backend.track.version, grpc_outputs(served), grpc_outputs(response))

    def handler(self):
        front = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, call_details):
                method = call_details.method
                if not method.startswith(GRPC_SERVICE) or method.endswith("StreamInfer"):
                    return None

                async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                    metadata = tuple((k, v) for k, v in context.invocation_metadata() if not k.startswith(":"))
                    is_infer = method.endswith("/ModelInfer")
                    if is_infer and not front.admission.enter():
                        front.metrics.shed.labels("grpc").inc()
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                            f"front door at capacity ({front.admission.limit} requests in flight): "
                                            "retry later")
                    target = front.routing.choose() if is_infer else front.routing.primary["stable"]
                    try:
                        response = await front._call(target.track.name, method)(request, metadata=metadata, timeout=60)
                    except grpc.aio.AioRpcError as err:
                        if is_infer:
                            front.metrics.routed.labels(target.track.name, target.track.version, "grpc",
                                                        err.code().name.lower()).inc()
                        await context.abort(err.code(), err.details() or "")
                    finally:
                        if is_infer:
                            front.admission.leave()
                    if is_infer:
                        front.metrics.routed.labels(target.track.name, target.track.version, "grpc", "ok").inc()
                        shadow = front.routing.mirror_to()
                        if shadow is not None and not front.mirrors.enter():
                            front.metrics.mirrored.labels("shadow", shadow.track.version, "grpc", "dropped").inc()
                            shadow = None
                        if shadow is not None:
                            task = asyncio.get_running_loop().create_task(
                                front._mirror(shadow, method, request, metadata, response))
                            front.background.add(task)
                            task.add_done_callback(front.background.discard)
                    await context.send_initial_metadata((("x-mlsd-track", target.track.name),
                                                         ("x-mlsd-version", target.track.version)))
                    return response

                return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=None,
                                                           response_serializer=None)

        return Handler()

    async def close(self) -> None:
        if self.background:
            await asyncio.wait(self.background, timeout=5)
        for channel in self.channels.values():
            await channel.close()
