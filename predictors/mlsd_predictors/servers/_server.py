"""KServe's ModelServer with what a predictor needs on top: a bind address (KServe binds every
interface), our fuzzed v2 REST infer route, typed errors mapped to their HTTP/gRPC codes, and
admission control on both protocols (`_admission.py`: bounded queue, 503/UNAVAILABLE + Retry-After,
body size and time limits)."""

from __future__ import annotations

import asyncio
from concurrent import futures

import grpc
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route
from google.protobuf.message import DecodeError
from grpc import aio
from kserve import ModelServer
from kserve import model_server as kserve_model_server
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import ModelNotReady
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.server import RESTServer
from tritonclient.utils import np_to_triton_dtype

from ._admission import Admission, AdmissionLimits, AdmissionMiddleware
from ._codec import HEADER_LENGTH, decode_grpc, decode_rest, encode_rest, select_outputs
from ._errors import Overloaded, ServingError
from ._model import CaseStudyModel

DEFAULT_MAX_REQUEST_BYTES = AdmissionLimits.max_request_bytes


async def serving_error_handler(_: Request, exc: ServingError) -> JSONResponse:
    return JSONResponse(status_code=int(exc.http_status), content=exc.to_json())


def install_v2_infer_route(app: FastAPI, dataplane) -> None:
    """Puts our infer route ahead of KServe's, as a plain Starlette route (FastAPI's parameter
    machinery is measurable per request and buys nothing here)."""

    async def infer(request: Request) -> Response:
        model_name = request.path_params["model_name"]
        model = await dataplane.get_model(model_name)
        if not model.ready:
            raise ModelNotReady(model_name)
        if not isinstance(model, CaseStudyModel):
            raise ModelNotReady(model_name, "not an mlsd predictor")
        try:
            decoded = decode_rest(await request.body(), request.headers.get(HEADER_LENGTH))
        except ServingError as err:
            model.count_rejected(err)
            raise
        results, _ = await model(decoded, None)
        outputs = select_outputs(results, decoded.outputs, decoded.binary_default)
        payload, headers = encode_rest(model_name, model.version, decoded.id, results, outputs)
        return Response(content=payload, headers=headers)

    for path in ("/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer"):
        app.router.routes.insert(0, Route(path, infer, methods=["POST"]))


class _Undecodable:
    """What a request that is no protobuf message decodes to: the handler answers INVALID_ARGUMENT
    (grpcio would otherwise answer UNKNOWN from its own deserializer, before any handler runs)."""

    def __init__(self, error: DecodeError) -> None:
        self.error = error


def _tolerant(deserializer):
    def deserialize(payload: bytes):
        try:
            return deserializer(payload)
        except DecodeError as err:
            return _Undecodable(err)
    return deserialize


class _Interceptor(ExceptionToStatusInterceptor):
    async def intercept_service(self, continuation, handler_call_details):
        handler = await super().intercept_service(continuation, handler_call_details)
        if handler is None or handler.request_deserializer is None or not handler.unary_unary:
            return handler
        return grpc.unary_unary_rpc_method_handler(handler.unary_unary,
                                                   request_deserializer=_tolerant(handler.request_deserializer),
                                                   response_serializer=handler.response_serializer)

    async def intercept(self, method, request_or_iterator, context, method_name):
        if isinstance(request_or_iterator, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"request is not a valid protobuf message: {request_or_iterator.error}")
        return await super().intercept(method, request_or_iterator, context, method_name)

    async def handle_exception(self, ex, request_or_iterator, context, method_name):
        if isinstance(ex, ServingError):
            if isinstance(ex, Overloaded):
                context.set_trailing_metadata((("retry-after", str(ex.retry_after_s)),))
            await context.abort(grpc.StatusCode[ex.grpc_code], ex.reason)
        await super().handle_exception(ex, request_or_iterator, context, method_name)


class _Servicer(InferenceServicer):
    """ModelInfer straight from and to protobuf for our models: no KServe InferRequest/Response
    round trip (it copies tensors through Python lists), our typed errors."""

    def __init__(self, data_plane, model_repository_extension, admission: Admission) -> None:
        super().__init__(data_plane, model_repository_extension)
        self._admission = admission

    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        if not self._admission.try_enter("grpc"):
            raise self._admission.overloaded()
        try:
            return await self._infer(request, context)
        finally:
            self._admission.leave()

    async def _infer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        model = await self._data_plane.get_model(request.model_name)
        if not isinstance(model, CaseStudyModel):
            return await super().ModelInfer(request, context)
        if not model.ready:
            raise ModelNotReady(request.model_name)
        try:
            decoded = decode_grpc(request)
        except ServingError as err:
            model.count_rejected(err)
            raise
        results, _ = await model(decoded, None)
        response = pb.ModelInferResponse(model_name=request.model_name, model_version=model.version,
                                         id=request.id)
        for out in select_outputs(results, decoded.outputs, True):
            array = np.ascontiguousarray(results[out.name])
            tensor = response.outputs.add()
            tensor.name = out.name
            tensor.datatype = np_to_triton_dtype(array.dtype)
            tensor.shape.extend(array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response


class _GRPCServer(GRPCServer):
    def __init__(self, host: str, admission: Admission, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._host = host
        self._admission = admission
        self._max_bytes = admission.limits.max_request_bytes

    async def start(self, max_workers: int) -> None:
        servicer = _Servicer(self._data_plane, self._model_repository_extension, self._admission)
        limits = self._admission.limits
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            # grpc core hands calls to the event loop one per turn, so under a burst they wait inside
            # core before our admission gate sees them: cap them there too (RESOURCE_EXHAUSTED).
            maximum_concurrent_rpcs=(limits.max_inflight + limits.max_reading) if limits.max_inflight else None,
            # No LoggingInterceptor: a log line per call costs more than a small model's inference.
            interceptors=(_Interceptor(),),
            options=[("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                     ("grpc.max_receive_message_length", self._max_bytes)],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._server.add_insecure_port(f"{host}:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()


class _RESTServer(RESTServer):
    """KServe's REST server without its per-request timing middleware (it logs every request;
    latency is in `mlsd_request_duration_seconds`)."""

    def _add_middlewares(self, app: FastAPI) -> None:
        pass


class PredictorServer(ModelServer):
    """`ModelServer` bound to `host`, with our REST route, error mapping and admission control."""

    def __init__(self, *, host: str = "0.0.0.0", limits: AdmissionLimits | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.host = host
        self.limits = limits or AdmissionLimits()
        self.limits.check()
        self.admission = Admission(self.limits)

    def start(self, models: list) -> None:
        self._register_and_check_atleast_one_model_is_ready(models)
        app = kserve_model_server.app
        app.add_exception_handler(ServingError, serving_error_handler)
        app.add_middleware(AdmissionMiddleware, admission=self.admission)
        install_v2_infer_route(app, self.dataplane)
        self._rest_server = _RESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            access_log_format=self.access_log_format, workers=1, grace_period=self.grace_period,
            event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive)
        self._rest_server.config.host = self.host
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = _GRPCServer(self.host, self.admission, self.grpc_port, self.dataplane,
                                            self.model_repository_extension, kwargs=vars(kserve_model_server.args),
                                            grace_period=self.grace_period)
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())

    def stop(self, sig: int) -> None:
        """SIGINT/SIGTERM: drain and exit. KServe's own stop leaves a single-process REST server running."""
        if self._rest_server is not None:
            self._rest_server._server.should_exit = True
        super().stop(sig)
