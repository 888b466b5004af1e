"""Operator settings from MLSD_* environment variables (what the chart sets)."""

from __future__ import annotations

import pytest

from mlsd_contract.api import Toleration
from mlsd_operator.controller import OperatorSettings


def test_defaults_without_environment(monkeypatch):
    for key in ("MLSD_NAMESPACES", "MLSD_GATEWAY", "MLSD_GPU_TOLERATIONS", "MLSD_ROLLOUT_TICK_SECONDS"):
        monkeypatch.delenv(key, raising=False)
    settings = OperatorSettings.from_env()
    assert settings.namespaces == () and settings.gateway is None
    config = settings.render_config()
    assert config.gpu_tolerations == (Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),)


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("MLSD_NAMESPACES", "ads, search")
    monkeypatch.setenv("MLSD_GATEWAY", "infra/public")
    monkeypatch.setenv("MLSD_GPU_TOLERATIONS", '[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]')
    monkeypatch.setenv("MLSD_ROLLOUT_TICK_SECONDS", "2.5")
    settings = OperatorSettings.from_env()
    assert settings.namespaces == ("ads", "search")
    assert settings.rollout_tick_seconds == 2.5
    config = settings.render_config()
    assert (config.gateway.namespace, config.gateway.name) == ("infra", "public")
    assert config.gpu_tolerations == (Toleration(key="gpu", operator="Exists", effect="NoSchedule"),)


def test_bad_tolerations_are_refused(monkeypatch):
    monkeypatch.setenv("MLSD_GPU_TOLERATIONS", '[{"key": "gpu", "operator": "Sometimes"}]')
    with pytest.raises(ValueError):
        OperatorSettings.from_env()
