"""Schema fuzz, Python side (tests/fuzz_manifests.py; the API server side is
tests/integration/test_crd_fuzz.py): `validate_manifest` never raises or hangs, refuses with a path
or reason for every problem, and what it accepts survives a round trip through the wire form."""

from __future__ import annotations

import datetime

from hypothesis import given, settings

from mlsd_contract.api import ModelDeployment, validate_manifest
from tests.fuzz_manifests import FUZZ_EXAMPLES, mutated_manifests


@settings(max_examples=FUZZ_EXAMPLES, deadline=datetime.timedelta(seconds=2), derandomize=FUZZ_EXAMPLES <= 150)
@given(doc=mutated_manifests())
def test_validate_manifest_answers_every_manifest(doc):
    model, problems = validate_manifest(doc)
    assert (model is None) == bool(problems)
    for problem in problems:
        assert str(problem).strip()
    if model is not None:
        wire = model.to_wire()
        again, problems = validate_manifest(wire)
        assert problems == [] and again == model
        assert ModelDeployment.model_validate(wire) == model      # the operator's lax parse agrees
