"""The operator's side of the API server: server-side apply, ownership checks, pruning, discovery."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from kubernetes import client, config as kube_config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from mlsd_contract.api import GROUP, PLURAL, VERSION
from mlsd_operator.builders import LABEL_DEPLOYMENT

FIELD_MANAGER = "mlsd-operator"
MANAGED_BY_SELECTOR = "app.kubernetes.io/managed-by=mlsd-operator"

# Every kind the operator may create; pruning looks at all of them, so a runtime switch cleans up.
CHILD_KINDS: tuple[tuple[str, str], ...] = (
    ("serving.kserve.io/v1alpha1", "ServingRuntime"),
    ("serving.kserve.io/v1beta1", "InferenceService"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("batch/v1", "CronJob"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "ServiceAccount"),
)

# What a user installs when a kind is missing: the condition message says it.
INSTALL_HINTS = {
    "serving.kserve.io": "KServe v0.20+ (its CRDs inferenceservices/servingruntimes.serving.kserve.io)",
    "gateway.networking.k8s.io": "the Gateway API CRDs v1.1+ (httproutes.gateway.networking.k8s.io)",
    "keda.sh": ("KEDA v2.12+ (its CRD scaledobjects.keda.sh), which scales on Prometheus for "
                "autoscaling.metric concurrency and rps (docs/autoscaling.md)"),
}

log = logging.getLogger("mlsd.operator")


class OwnershipConflict(RuntimeError):
    """An object with a child's name exists and belongs to someone else: the operator won't touch it."""


class MissingApi(RuntimeError):
    def __init__(self, api_version: str, kind: str):
        group = api_version.rpartition("/")[0]
        hint = INSTALL_HINTS.get(group, f"the API {api_version}")
        super().__init__(f"{kind} ({api_version}) is not served by this cluster: install {hint}")
        self.api_version, self.kind = api_version, kind


def new_api_client(pool_size: int = 32) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG); a connection
    pool as wide as the handler thread pool, so concurrent reconciles do not queue for sockets."""
    configuration = client.Configuration()
    try:
        kube_config.load_incluster_config(client_configuration=configuration)
    except kube_config.ConfigException:
        kube_config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


@dataclass(frozen=True)
class ObjectKey:
    api_version: str
    kind: str
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> "ObjectKey":
        return cls(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


def controller_uid(obj: dict[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


class Kube:
    """A thin, typed wrapper over the dynamic client; every call the operator makes goes through it."""

    def __init__(self, api: client.ApiClient | None = None, missing_api_ttl: float = 30.0):
        self.api = api or new_api_client()
        # A kind found missing is not looked up again for a while, and the full rediscovery a miss
        # needs runs at most once per period for the whole process: re-running discovery on every
        # reconcile of every object would cost far more than the reconciles themselves.
        self.missing_api_ttl = max(missing_api_ttl, 1.0)
        self._missing: dict[tuple[str, str], float] = {}
        self._resolved: dict[tuple[str, str], Any] = {}
        self._next_rediscovery = 0.0
        # Handlers run in a thread pool, and the dynamic client's discovery cache is not thread-safe:
        # a rediscovery (invalidate + refetch) under concurrent lookups raised KeyError('resources')
        # in other threads. Discovery happens under this lock; resolved kinds are then read lock-free.
        self._discovery = threading.Lock()
        self.dynamic = dynamic.DynamicClient(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def resource(self, api_version: str, kind: str):
        key = (api_version, kind)
        found = self._resolved.get(key)
        if found is not None:
            return found
        if self._missing.get(key, 0.0) > time.monotonic():
            raise MissingApi(api_version, kind)
        with self._discovery:
            try:
                found = self.dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                # The discovery cache may predate a CRD install: look once more before giving up.
                if time.monotonic() < self._next_rediscovery:
                    self._missing[key] = self._next_rediscovery
                    raise MissingApi(api_version, kind) from None
                self._next_rediscovery = time.monotonic() + self.missing_api_ttl
                self.dynamic.resources.invalidate_cache()
                try:
                    found = self.dynamic.resources.get(api_version=api_version, kind=kind)
                except ResourceNotFoundError:
                    self._missing[key] = time.monotonic() + self.missing_api_ttl
                    raise MissingApi(api_version, kind) from None
            self._missing.pop(key, None)
            self._resolved[key] = found
            return found

    def served(self, api_version: str, kind: str) -> bool:
        try:
            self.resource(api_version, kind)
            return True
        except MissingApi:
            return False

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Pods of one track (read only while it is not available: see _reconcile._observe)."""
        return self.resource("v1", "Pod").get(namespace=namespace, label_selector=label_selector).to_dict()["items"]

    def apply(self, obj: dict[str, Any], owner_uid: str, *,
              just_before: Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]] | None = None) -> str:
        """Server-side apply, after checking that an existing object is ours (or ours to adopt).
        `just_before(obj, existing)` may still change the object after every read but its own, right
        before the write (the route's availability check: the shortest time from check to write).

        Returns "created", "updated" or "unchanged" (an apply that changes nothing writes nothing)."""
        meta = obj["metadata"]
        existing = self.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if existing is not None:
            owner = controller_uid(existing)
            labels = existing["metadata"].get("labels") or {}
            ours = owner == owner_uid
            orphan_of_ours = owner is None and labels.get(LABEL_DEPLOYMENT) == obj["metadata"]["labels"][LABEL_DEPLOYMENT] \
                and labels.get("app.kubernetes.io/managed-by") == FIELD_MANAGER
            if not (ours or orphan_of_ours):
                whose = f"controlled by uid {owner}" if owner else "not created by mlsd-operator"
                raise OwnershipConflict(
                    f"{obj['kind']} {meta['namespace']}/{meta['name']} already exists and is {whose}; "
                    "rename the ModelDeployment or delete that object")
        resource = self.resource(obj["apiVersion"], obj["kind"])
        if just_before is not None:
            obj = just_before(obj, existing)
        applied = resource.server_side_apply(body=obj, name=meta["name"], namespace=meta["namespace"],
                                             field_manager=FIELD_MANAGER, force_conflicts=True)
        if existing is None:
            return "created"
        return "unchanged" if applied.metadata.resourceVersion == existing["metadata"]["resourceVersion"] else "updated"

    def owned(self, namespace: str, deployment_name: str, owner_uid: str) -> list[dict[str, Any]]:
        """Every child of one ModelDeployment, across all child kinds this cluster serves."""
        selector = f"{MANAGED_BY_SELECTOR},{LABEL_DEPLOYMENT}={deployment_name}"
        found = []
        for api_version, kind in CHILD_KINDS:
            if not self.served(api_version, kind):
                continue
            items = self.resource(api_version, kind).get(namespace=namespace, label_selector=selector).to_dict()
            for item in items.get("items") or []:
                if controller_uid(item) == owner_uid:
                    item.setdefault("apiVersion", api_version)
                    item.setdefault("kind", kind)
                    found.append(item)
        return found

    def delete(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        try:
            self.resource(obj["apiVersion"], obj["kind"]).delete(
                name=meta["name"], namespace=meta["namespace"],
                body={"propagationPolicy": "Background",
                      "preconditions": {"uid": meta["uid"]}} if meta.get("uid") else None)
        except NotFoundError:
            pass

    def create_once(self, obj: dict[str, Any]) -> bool:
        """Creates `obj`; False if an object of that name exists already (Jobs are started once, by name)."""
        meta = obj["metadata"]
        try:
            self.resource(obj["apiVersion"], obj["kind"]).create(body=obj, namespace=meta.get("namespace"))
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any],
                     resource_version: str | None = None) -> None:
        """Merge-patches status; with `resource_version` it fails with 409 if the object moved on
        (rollout counters are only ever written from the state they were computed from)."""
        body: dict[str, Any] = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, body, _content_type="application/merge-patch+json")

    def patch_model_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, patch, _content_type="application/merge-patch+json")


__all__ = ["Kube", "MissingApi", "ObjectKey", "OwnershipConflict", "log"]
