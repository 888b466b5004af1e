"""Readable validation of a manifest: one problem per line, `field.path: reason`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

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
        return ModelDeployment.model_validate(obj), []
    except ValidationError as err:
        return None, [ValidationProblem(_path(e["loc"]), _reason(e)) for e in err.errors()]
