"""The operator's discovery under its thread pool: many reconciles resolving kinds at once while a
missing kind forces rediscoveries must see only MissingApi, never a torn discovery cache (the
kubernetes client's cache raised KeyError('resources') in other threads during an invalidation,
found by the 100-ModelDeployment benchmark)."""

from __future__ import annotations

import threading
import time

from mlsd_operator.controller import Kube, MissingApi

KINDS = [("apps/v1", "Deployment"), ("v1", "Service"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
         ("batch/v1", "CronJob"), ("example.invalid/v1", "NotInstalled")]


def hammer(kube: Kube, seconds: float = 4.0, threads: int = 16) -> list[BaseException]:
    errors: list[BaseException] = []
    stop = time.monotonic() + seconds

    def work(offset: int) -> None:
        i = offset
        while time.monotonic() < stop:
            api_version, kind = KINDS[i % len(KINDS)]
            i += 1
            try:
                kube.resource(api_version, kind)
            except MissingApi:
                pass
            except BaseException as error:      # noqa: BLE001 - any other failure is the bug
                errors.append(error)
                return

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return errors


def test_concurrent_lookups_during_rediscovery_see_no_torn_cache(control_plane):
    with control_plane.api_client() as api:
        kube = Kube(api, missing_api_ttl=0.01)      # rediscover as often as a miss allows
        errors = hammer(kube)
        assert not errors, f"{len(errors)} lookups failed, first: {errors[0]!r}"
        assert kube.served("apps/v1", "Deployment") and not kube.served("example.invalid/v1", "NotInstalled")
