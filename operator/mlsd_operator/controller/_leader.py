"""Leader election on a coordination.k8s.io Lease, so two or more replicas run safely: one
reconciles, the others wait. A leader that cannot renew in time exits (as controller-runtime
does) and its pod restarts as a standby; the state lives in the CRs, so nothing is lost."""

from __future__ import annotations

import datetime as dt
import http.server
import logging
import os
import socket
import threading
import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("mlsd.operator.leader")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class LeaseElector:
    def __init__(self, api: client.ApiClient, namespace: str, name: str = "mlsd-operator",
                 identity: str | None = None, lease_seconds: int = 15, renew_seconds: float = 5):
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name
        self.identity = identity or default_identity()
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds

    def _spec(self, acquired: bool, old: client.V1LeaseSpec | None) -> client.V1LeaseSpec:
        now = _now()
        transitions = (old.lease_transitions or 0) if old else 0
        return client.V1LeaseSpec(
            holder_identity=self.identity, lease_duration_seconds=self.lease_seconds,
            acquire_time=now if acquired else old.acquire_time, renew_time=now,
            lease_transitions=transitions + (1 if acquired and old else 0))

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True while this process holds the lease."""
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = client.V1Lease(metadata=client.V1ObjectMeta(name=self.name), spec=self._spec(True, None))
            try:
                self.coordination.create_namespaced_lease(self.namespace, body)
                return True
            except ApiException as race:
                if race.status == 409:
                    return False
                raise
        spec = lease.spec
        mine = spec.holder_identity == self.identity
        renewed = spec.renew_time or spec.acquire_time
        expired = renewed is None or (_now() - renewed).total_seconds() > (spec.lease_duration_seconds or self.lease_seconds)
        if not (mine or expired):
            return False
        lease.spec = self._spec(not mine, spec)
        try:   # resourceVersion in the body: a concurrent taker gets 409 and stays standby
            self.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
            return True
        except ApiException as error:
            if error.status == 409:
                return False
            raise

    def wait_until_leader(self) -> None:
        announced = False
        while True:
            try:
                if self.try_acquire_or_renew():
                    log.info("became leader (%s/%s as %s)", self.namespace, self.name, self.identity)
                    return
            except ApiException as error:
                log.warning("lease check failed: %s", error.reason)
            if not announced:
                log.info("standing by: another replica holds %s/%s", self.namespace, self.name)
                announced = True
            time.sleep(self.renew_seconds)

    def keep_leading(self) -> threading.Thread:
        """Renews in the background; exits the process if leadership is lost or cannot be renewed."""
        def renew() -> None:
            last_ok = time.monotonic()
            while True:
                time.sleep(self.renew_seconds)
                try:
                    if self.try_acquire_or_renew():
                        last_ok = time.monotonic()
                        continue
                    log.error("leadership lost to another replica: exiting to restart as a standby")
                except ApiException as error:
                    if time.monotonic() - last_ok < self.lease_seconds:
                        continue
                    log.error("could not renew the lease for %ss (%s): exiting", self.lease_seconds, error.reason)
                os._exit(1)

        thread = threading.Thread(target=renew, name="lease-renewer", daemon=True)
        thread.start()
        return thread


class StandbyHealth:
    """Answers /healthz while a replica waits for the lease, so its liveness probe passes."""

    def __init__(self, port: int):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:     # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"standby\n")

            def log_message(self, *args: object) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
