"""Both timers (the rollout tick and the drift check) treat a failed call the same way (_periodic).

The handlers are called as kopf calls them, with the work they wrap (`tick`, `drift.check`)
replaced by one that fails the way the API server or Prometheus fails: a refusal cannot be
produced on demand from a real API server at the moment a timer runs, which is what this checks.
The real API server's refusals are exercised end to end in tests/integration/test_faults.py.
"""

from __future__ import annotations

import logging

import kopf
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from mlsd_operator.controller import _handlers as handlers
from mlsd_operator.rollout import PrometheusError

BODY = {"metadata": {"name": "m", "namespace": "ns", "uid": "u-1"}, "spec": {}}
TIMERS = {
    "rollout": ("tick", handlers.ROLLOUT_TICK_SECONDS, "AnalysisUnavailable"),
    "drift_check": ("drift.check", handlers.DRIFT_TICK_SECONDS, "DriftCheckUnavailable"),
}


class _Reads:
    """The one call the timers make before their work: reading the object under its lock."""

    def get_model_deployment(self, namespace: str, name: str) -> dict:
        return BODY


def _run(monkeypatch: pytest.MonkeyPatch, timer: str, error: Exception, memo: kopf.Memo | None = None):
    target, _, _ = TIMERS[timer]

    def fail(*_args, **_kwargs):
        raise error

    if target == "tick":
        monkeypatch.setattr(handlers, "tick", fail)
    else:
        monkeypatch.setattr(handlers.drift, "check", fail)
    memo = memo if memo is not None else kopf.Memo(kube=_Reads(), settings=None, prometheus=None)
    return getattr(handlers, timer)(body=BODY, memo=memo, logger=logging.getLogger("test"))


@pytest.mark.parametrize("timer", sorted(TIMERS))
@pytest.mark.parametrize("status", [403, 500, 503, 429])
def test_a_refused_call_retries_at_the_next_tick(monkeypatch: pytest.MonkeyPatch, timer: str, status: int) -> None:
    with pytest.raises(kopf.TemporaryError) as raised:
        _run(monkeypatch, timer, ApiException(status=status, reason="refused"))
    assert raised.value.delay == TIMERS[timer][1]   # the timer's own interval, not kopf's 60 s back-off
    assert str(status) in str(raised.value)


@pytest.mark.parametrize("timer", sorted(TIMERS))
@pytest.mark.parametrize("error", [urllib3.exceptions.ProtocolError("reset"), ConnectionRefusedError("refused")])
def test_a_lost_connection_retries_at_the_next_tick(monkeypatch: pytest.MonkeyPatch, timer: str,
                                                    error: Exception) -> None:
    with pytest.raises(kopf.TemporaryError) as raised:
        _run(monkeypatch, timer, error)
    assert raised.value.delay == TIMERS[timer][1]


@pytest.mark.parametrize("timer", sorted(TIMERS))
def test_a_conflict_is_left_to_the_next_tick(monkeypatch: pytest.MonkeyPatch, timer: str) -> None:
    assert _run(monkeypatch, timer, ApiException(status=409, reason="Conflict")) is None


@pytest.mark.parametrize("timer", sorted(TIMERS))
def test_prometheus_away_warns_once_a_minute(monkeypatch: pytest.MonkeyPatch, timer: str) -> None:
    warnings: list[tuple[str, str]] = []
    monkeypatch.setattr(handlers.kopf, "warn", lambda body, *, reason, message: warnings.append((reason, message)))
    memo = kopf.Memo(kube=_Reads(), settings=None, prometheus=None)
    for _ in range(3):
        with pytest.raises(kopf.TemporaryError) as raised:
            _run(monkeypatch, timer, PrometheusError("connection refused"), memo)
        assert raised.value.delay == TIMERS[timer][1]
    assert warnings == [(TIMERS[timer][2], "connection refused")]
