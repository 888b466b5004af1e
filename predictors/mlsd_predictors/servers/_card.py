"""What a predictor reads from a variant's model card (`model-card.json`, written by `mlsd build`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import VariantNotServable
from ._signature import Signature, TensorSpec

CARD_FILE = "model-card.json"
DEFAULT_MAX_BATCH_SIZE = 256


def _shape(raw: list[int]) -> tuple[int, ...]:
    """Dims without the batch axis; cards may or may not write the leading -1."""
    dims = [int(d) for d in raw]
    return tuple(dims[1:]) if dims and dims[0] == -1 else tuple(dims)


def _specs(items: Any) -> tuple[TensorSpec, ...]:
    if isinstance(items, dict):   # {"name": {"datatype": ..., "shape": ...}}
        items = [{"name": name, **spec} for name, spec in items.items()]
    return tuple(TensorSpec(str(i["name"]), str(i.get("datatype") or i.get("dtype")).upper(),
                            _shape(i.get("shape") or i.get("dims") or []),
                            i.get("minimum"), i.get("maximum")) for i in items)


@dataclass(frozen=True)
class Card:
    path: Path
    raw: dict[str, Any]

    @classmethod
    def load(cls, model_dir: Path) -> Card:
        path = Path(model_dir) / CARD_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {CARD_FILE} in {model_dir}: is this a `mlsd build` KServe variant "
                                    "(<out>/<case>/<V>/kserve/<precision>)?")
        return cls(path, json.loads(path.read_text()))

    def get(self, *keys: str, default: Any = None) -> Any:
        for key in keys:
            value: Any = self.raw
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                return value
        return default

    @property
    def case_study(self) -> str:
        return str(self.get("caseStudy", "case_study", "name"))

    @property
    def version(self) -> str:
        return str(self.get("version", "modelVersion", default="1"))

    @property
    def precision(self) -> str:
        return str(self.get("precision", "variant", default="fp32"))

    def check_servable(self) -> None:
        servable = self.get("servable", default=True)
        if not servable:
            reason = self.get("notServableReason", "not_servable_reason", default="no reason recorded")
            raise VariantNotServable(f"{self.case_study} version {self.version} {self.precision} is not servable: "
                                     f"{reason} (card {self.path})")

    def signature(self, max_batch_size: int | None = None) -> Signature:
        sig = self.get("signature", default={})
        limit = max_batch_size or int(self.get("signature.maxBatchSize", "signature.max_batch_size", "maxBatchSize",
                                               default=DEFAULT_MAX_BATCH_SIZE))
        return Signature(_specs(sig.get("inputs", [])), _specs(sig.get("outputs", [])), limit)
