"""`mlsd build` argument handling (the builds themselves run in conftest's session fixture)."""

from __future__ import annotations

from pathlib import Path

from .conftest import VERSION, run_mlsd


def test_needs_exactly_one_of_case_or_all(tmp_path: Path) -> None:
    code, output = run_mlsd("build", "--version", "1", "--out", str(tmp_path))
    assert code == 2 and "one CASE or --all" in output
    code, output = run_mlsd("build", "visual-search", "--all", "--version", "1", "--out", str(tmp_path))
    assert code == 2


def test_rejects_unknown_case_and_bad_version(tmp_path: Path) -> None:
    code, output = run_mlsd("build", "spam-detection", "--version", "1", "--out", str(tmp_path))
    assert code == 2 and "unknown case study" in output
    code, _ = run_mlsd("build", "visual-search", "--version", "0", "--out", str(tmp_path))
    assert code == 2


def test_refuses_to_overwrite_a_version(repository_out: Path) -> None:
    code, output = run_mlsd("build", "ad-click-prediction", "--version", str(VERSION), "--out", str(repository_out), "--small")
    assert code == 1 and "exists" in output and "--overwrite" in output
