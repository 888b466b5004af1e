"""`mlsd serve` pure parts: manifest -> tracks, local storage paths, the split and mirror counters."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsd_contract.api import validate_manifest
from mlsd_predictors.serve._frontdoor import Mirror, WeightedRoundRobin
from mlsd_predictors.serve._plan import PlanError, load_manifest, plan
from tests.conftest import canary, manifest


def mdep(**spec):
    obj, problems = validate_manifest(manifest(**spec))
    assert obj is not None, problems
    return obj


def test_tracks_from_manifest_and_storage_mapping(tmp_path: Path) -> None:
    tracks = plan(mdep(runtime="triton", canary=canary("2", steps=[20, 50]),
                       shadow={"model": {"version": "3", "storageUri": "file:///srv/models/ad/3"}, "percent": 40}),
                  tmp_path)
    assert [(t.name, t.version, t.percent) for t in tracks] == [("stable", "1", 80), ("canary", "2", 20), ("shadow", "3", 40)]
    assert tracks[0].root == tmp_path / "ad-click-prediction" / "1"      # pvc://models/<path> -> models-dir/<path>
    assert tracks[2].root == Path("/srv/models/ad/3")
    assert tracks[0].variant_dir(mdep().spec.runtime) == tmp_path / "ad-click-prediction" / "1" / "kserve" / "fp32"


def test_canary_percent_flag(tmp_path: Path) -> None:
    with_canary = mdep(canary=canary("2"))
    assert [t.percent for t in plan(with_canary, tmp_path, canary_percent=35)] == [65, 35]
    with pytest.raises(PlanError, match="within 0..100"):
        plan(with_canary, tmp_path, canary_percent=120)
    with pytest.raises(PlanError, match="has no canary"):
        plan(mdep(), tmp_path, canary_percent=10)


def test_remote_storage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="reads file:// and pvc://"):
        plan(mdep(model={"storageUri": "s3://bucket/ad/1"}), tmp_path)


def test_invalid_manifest_lists_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: mlsd.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\n"
                    "spec: {caseStudy: nope, model: {version: '1', storageUri: 'pvc://m/x'}}\n")
    with pytest.raises(PlanError, match="spec.caseStudy"):
        load_manifest(path)


@pytest.mark.parametrize("weights", [{"stable": 90, "canary": 10}, {"stable": 67, "canary": 33}, {"stable": 100}])
def test_weighted_round_robin_is_exact_over_each_cycle(weights) -> None:
    split = WeightedRoundRobin(weights)
    picks = [split.pick() for _ in range(100 * 20)]
    assert {k: picks.count(k) for k in weights} == {k: w * 20 for k, w in weights.items()}
    window = picks[:100]   # and spread out: no long runs of the minority track
    assert {k: window.count(k) for k in weights} == weights


def test_mirror_share() -> None:
    mirror = Mirror(30)
    assert sum(mirror.take() for _ in range(1000)) == 300
    assert sum(Mirror(100).take() for _ in range(7)) == 7
