"""Cross-field rules written once: CEL for the API server, a Python check for `mlsd validate`.

Each rule lives on the model it guards. The CRD generator emits `rule.cel` as an
`x-kubernetes-validations` entry; pydantic runs `rule.check` on the same model, so the API server
and the CLI reject the same objects with the same message (an integration test holds them to it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


@dataclass(frozen=True)
class Rule:
    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None   # reported path, relative to the model, e.g. ".maxReplicas"

    def to_validation(self) -> dict[str, str]:
        entry = {"rule": self.cel, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry


class RuleViolation(ValueError):
    """Raised inside pydantic validation; carries the rule's message unchanged."""


class ApiModel(BaseModel):
    """Base for every API type: camelCase on the wire, unknown fields refused, rules enforced."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )
    rules: ClassVar[tuple[Rule, ...]] = ()

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        if cls.rules:
            handler.resolve_ref_schema(schema)["x-kubernetes-validations"] = [
                rule.to_validation() for rule in cls.rules
            ]
        return schema

    @model_validator(mode="after")
    def _check_rules(self) -> "ApiModel":
        for rule in type(self).rules:
            if not rule.check(self):
                raise RuleViolation(rule.message)
        return self

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
