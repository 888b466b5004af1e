"""Admission control for a predictor: bounded work, fast refusals, no waiting on slow clients.

A request passes two gates, each with a fixed capacity, so memory and latency stay bounded
whatever the offered load:

1. *Reading* (REST only; gRPC bodies are framed by grpc core and capped by its receive limit):
   at most `max_reading` request bodies are being received at once, each within `body_timeout_s`
   (a slow or stalled client gets 408, it never holds a slot longer) and `max_request_bytes`
   (413 with the limit in the reason, refused from Content-Length before any byte is read).
2. *Admitted* (REST and gRPC infer calls): at most `max_inflight` requests are decoded, queued in
   the micro-batcher or running. One more is refused at once with 503 + `Retry-After` (gRPC:
   UNAVAILABLE with a `retry-after` trailer), instead of queueing until it times out: under
   overload, the accepted requests keep their latency and the rest learn it in microseconds.
   gRPC calls beyond `max_inflight + max_reading` are refused earlier still, by grpc core
   (`maximum_concurrent_rpcs`: RESOURCE_EXHAUSTED, no trailer), since core queues a burst before
   the event loop takes the calls one per turn.

Memory bound: (max_reading + max_inflight) x max_request_bytes of request bodies. Health,
metadata and /metrics never go through gate 2, so probes and scrapes answer during overload.

Settings: flags of `python -m mlsd_predictors.servers.kserve`, defaults from MLSD_* variables
(`AdmissionLimits.from_env`). Metrics: `mlsd_queue_depth`, `mlsd_queue_limit`,
`mlsd_rejected_requests_total{protocol,reason}`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from ._errors import Overloaded, PayloadTooLarge, RequestTimeout, ServingError

INFER_PATH = re.compile(r"^/v1/models/[^/]+:(predict|explain)$|^/v2/models/[^/]+(/versions/[^/]+)?/infer$")


@dataclass(frozen=True)
class AdmissionLimits:
    max_inflight: int = 64
    """Requests admitted at once (decoding, queued for a batch or running); 0: unlimited."""
    max_reading: int = 256
    """REST request bodies being received at once; 0: unlimited."""
    body_timeout_s: float = 10.0
    """Longest time to receive one request body after its headers."""
    max_request_bytes: int = 16 * 1024 * 1024
    retry_after_s: int = 1
    """What a refused client is told to wait (Retry-After)."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "AdmissionLimits":
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for field, kind in (("max_inflight", int), ("max_reading", int), ("body_timeout_s", float),
                            ("max_request_bytes", int), ("retry_after_s", int)):
            raw = env.get(f"MLSD_{field.upper()}")
            if raw:
                values[field] = kind(raw)
        limits = cls(**values)
        limits.check()
        return limits

    def check(self) -> None:
        if min(self.max_inflight, self.max_reading, self.retry_after_s) < 0:
            raise ValueError(f"admission limits must be >= 0: {self}")
        if self.body_timeout_s <= 0 or self.max_request_bytes <= 0:
            raise ValueError(f"body_timeout_s and max_request_bytes must be > 0: {self}")


@dataclass(frozen=True)
class AdmissionSeries:
    depth: Gauge
    limit: Gauge
    rejected: Counter


def create_series(registry: CollectorRegistry = REGISTRY) -> AdmissionSeries:
    return AdmissionSeries(
        depth=Gauge("mlsd_queue_depth", "Inference requests admitted and not finished (queued or running).",
                    registry=registry),
        limit=Gauge("mlsd_queue_limit", "Most inference requests admitted at once (0: unlimited).",
                    registry=registry),
        rejected=Counter("mlsd_rejected_requests", "Requests refused before inference, by reason: "
                         "overload (503), body_timeout (408), payload_too_large (413), too_many_readers (503).",
                         ("protocol", "reason"), registry=registry),
    )


_DEFAULT: AdmissionSeries | None = None


def default_series() -> AdmissionSeries:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = create_series()
    return _DEFAULT


class Admission:
    """The two counters. Both servers run on one event loop, so plain ints need no lock."""

    def __init__(self, limits: AdmissionLimits, series: AdmissionSeries | None = None) -> None:
        self.limits = limits
        self.series = series or default_series()
        self.inflight = 0
        self.reading = 0
        self.series.limit.set(limits.max_inflight)
        for protocol, reason in (("rest", "overload"), ("grpc", "overload"), ("rest", "body_timeout"),
                                 ("rest", "payload_too_large"), ("rest", "too_many_readers")):
            self.series.rejected.labels(protocol, reason)   # exported at 0 from the start

    def try_enter(self, protocol: str) -> bool:
        if self.limits.max_inflight and self.inflight >= self.limits.max_inflight:
            self.series.rejected.labels(protocol, "overload").inc()
            return False
        self.inflight += 1
        self.series.depth.set(self.inflight)
        return True

    def leave(self) -> None:
        self.inflight -= 1
        self.series.depth.set(self.inflight)

    def overloaded(self) -> Overloaded:
        error = Overloaded("", f"server at capacity ({self.limits.max_inflight} requests in flight); "
                               f"retry after {self.limits.retry_after_s}s")
        error.retry_after_s = self.limits.retry_after_s
        return error

    def reject(self, protocol: str, reason: str) -> None:
        self.series.rejected.labels(protocol, reason).inc()


async def _send_error(send, error: ServingError, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps(error.to_json()).encode()
    await send({"type": "http.response.start", "status": int(error.http_status),
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


class AdmissionMiddleware:
    """Pure ASGI middleware: reads each request body under the reading gate (size and time
    limits), then passes infer calls through the admission gate; the app gets the buffered body."""

    def __init__(self, app, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        admission, limits = self.admission, self.admission.limits
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_request_bytes:
            admission.reject("rest", "payload_too_large")
            await _send_error(send, PayloadTooLarge(
                "body", f"{int(length)} bytes exceed the limit of {limits.max_request_bytes}"))
            return
        is_infer = INFER_PATH.match(scope["path"]) is not None
        retry = ((b"retry-after", str(limits.retry_after_s).encode()),)
        # Refuse before reading when the queue is full: an overloaded server spends nothing on the body.
        if is_infer and limits.max_inflight and admission.inflight >= limits.max_inflight:
            admission.reject("rest", "overload")
            await _send_error(send, admission.overloaded(), retry)
            return
        if limits.max_reading and admission.reading >= limits.max_reading:
            admission.reject("rest", "too_many_readers")
            await _send_error(send, Overloaded("", f"{limits.max_reading} request bodies are being received; "
                                                   f"retry after {limits.retry_after_s}s"), retry)
            return
        admission.reading += 1
        try:
            body = await self._read_body(receive)
        except ServingError as error:
            await _send_error(send, error)
            return
        finally:
            admission.reading -= 1
        if body is None:   # client went away
            return
        if is_infer and not admission.try_enter("rest"):
            await _send_error(send, admission.overloaded(), retry)
            return
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()   # after the body: waits for http.disconnect

        try:
            await self.app(scope, replay, send)
        finally:
            if is_infer:
                admission.leave()

    async def _read_body(self, receive) -> bytes | None:
        limits = self.admission.limits
        deadline = time.monotonic() + limits.body_timeout_s
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                self.admission.reject("rest", "body_timeout")
                raise RequestTimeout("body", f"not received within {limits.body_timeout_s:g}s "
                                             f"({size} bytes arrived)") from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limits.max_request_bytes:
                self.admission.reject("rest", "payload_too_large")
                raise PayloadTooLarge("body", f"more than the limit of {limits.max_request_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
