"""YAML in the form people read and kubectl applies: block style, no anchors, key order kept."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def dump_all(docs: Iterable[Any]) -> str:
    return yaml.dump_all(list(docs), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         width=100, explicit_start=True)


def load_all_text(text: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def load_all(path: str | Path) -> list[Any]:
    """Every non-empty document of a YAML file (or stdin for '-')."""
    import sys

    text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def json_dumps(doc: Any) -> str:
    """Compact JSON (a YAML subset) for `kubectl patch -p`."""
    import json

    return json.dumps(doc, separators=(",", ":"))
