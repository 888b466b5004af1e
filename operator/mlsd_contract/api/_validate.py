"""Readable validation of a manifest: one problem per line, `field.path: reason`."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ._crd import crd
from ._types import API_VERSION, KIND, ModelDeployment


@dataclass(frozen=True)
class ValidationProblem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


def _path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif str(item).startswith("function-") or str(item) in ("str-enum", "enum"):
            continue    # pydantic's internal validator names are not fields
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _reason(error: dict[str, Any]) -> str:
    message = str(error["msg"])
    if error["type"] == "value_error":
        return message.removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return message


def validate_manifest(obj: Any) -> tuple[ModelDeployment | None, list[ValidationProblem]]:
    """Validates one decoded manifest; returns the typed object or the problems found."""
    if not isinstance(obj, dict):
        return None, [ValidationProblem("", "a manifest must be a mapping")]
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        return None, [ValidationProblem(
            "", f"not a {KIND} ({API_VERSION}): apiVersion={obj.get('apiVersion')!r} kind={obj.get('kind')!r}")]
    try:
        wire = json.dumps(_without_nulls(obj), allow_nan=False, default=str)
    except ValueError as err:
        return None, [ValidationProblem("", f"not representable as JSON: {err}")]
    try:
        # Strict, on the JSON the API server would get: "2", 2.0 or true is no integer there either.
        return ModelDeployment.model_validate_json(wire, strict=True), []
    except ValidationError as err:
        return None, [ValidationProblem(_path(e["loc"]), _reason(e)) for e in err.errors()]


@functools.cache
def _root_schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _without_nulls(node: Any, schema: dict[str, Any] | None = None) -> Any:
    """The API server prunes a known field set to null (none of ours is nullable) before defaulting
    and validation: `runtime: null` means the default, a required field set to null is missing. An
    unknown field stays, null or not, so that strict decoding refuses it as the server does."""
    schema = _root_schema() if schema is None else schema
    if isinstance(node, dict):
        known = schema.get("properties") or {}
        values = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None
        out = {}
        for key, value in node.items():
            if key in known:
                if value is not None:
                    out[key] = _without_nulls(value, known[key])
            else:
                out[key] = _without_nulls(value, values) if values is not None else value
        return out
    if isinstance(node, list) and isinstance(schema.get("items"), dict):
        return [_without_nulls(v, schema["items"]) for v in node]
    return node
