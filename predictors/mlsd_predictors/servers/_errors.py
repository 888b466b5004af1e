"""Typed request errors with fixed HTTP and gRPC codes, registered in this one place.

Every error names the field at fault (`inputs[0].shape`, `body`, ...) so a client can fix its
request without reading server logs. Servers translate them with `http_status`/`grpc_code`; the
`reason` label of `mlsd_request_errors_total` is the error's `code`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import ClassVar


class ServingError(ValueError):
    """A request the model cannot serve; a client error unless `http_status` says otherwise."""

    code: ClassVar[str] = "bad_request"
    http_status: ClassVar[int] = HTTPStatus.BAD_REQUEST
    grpc_code: ClassVar[str] = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def to_json(self) -> dict[str, str]:
        return {"error": self.reason, "code": self.code, "field": self.field}


class MalformedRequest(ServingError):
    code = "malformed_request"


class UnknownInput(ServingError):
    code = "unknown_input"


class MissingInput(ServingError):
    code = "missing_input"


class WrongDatatype(ServingError):
    code = "wrong_datatype"


class WrongShape(ServingError):
    code = "wrong_shape"


class BatchTooLarge(ServingError):
    code = "batch_too_large"
    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    grpc_code = "OUT_OF_RANGE"


class PayloadTooLarge(ServingError):
    code = "payload_too_large"
    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    grpc_code = "RESOURCE_EXHAUSTED"


class NonFiniteValue(ServingError):
    code = "non_finite"
    http_status = HTTPStatus.UNPROCESSABLE_ENTITY


class ValueOutOfRange(ServingError):
    code = "out_of_range"
    http_status = HTTPStatus.UNPROCESSABLE_ENTITY


class Overloaded(ServingError):
    """Refused by admission control (`_admission.py`): the server is at capacity; retry later."""

    code = "overloaded"
    http_status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = "UNAVAILABLE"
    retry_after_s: int = 1


class RequestTimeout(ServingError):
    """The client did not send its request body in time (a slow or stalled client)."""

    code = "request_timeout"
    http_status = HTTPStatus.REQUEST_TIMEOUT
    grpc_code = "DEADLINE_EXCEEDED"


class VariantNotServable(RuntimeError):
    """Raised at load time: the model card marks this variant not servable."""


ERRORS: tuple[type[ServingError], ...] = (
    MalformedRequest, UnknownInput, MissingInput, WrongDatatype, WrongShape,
    BatchTooLarge, PayloadTooLarge, NonFiniteValue, ValueOutOfRange,
)
"""The registry: documented in docs/serving.md and checked by tests/unit/servers."""

ADMISSION_ERRORS: tuple[type[ServingError], ...] = (Overloaded, RequestTimeout)
"""Refusals by the server's admission control rather than the model: not the request's fault."""
