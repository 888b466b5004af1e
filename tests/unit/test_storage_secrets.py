"""Storage credentials by Secret name: rendered children reference `storageSecretName` and carry no
value (the builders never see one); every rendered object validates against the Kubernetes 1.34
and KServe v0.20 schemas."""

from __future__ import annotations

import json

import pytest

from mlsd_contract.api import ModelDeployment, validate_manifest
from mlsd_contract.tracks import TrafficState
from mlsd_operator.builders import RenderConfig, build_children
from tests import schemas
from tests.conftest import canary, manifest

S3 = {"version": "1", "storageUri": "s3://bucket/ad/1", "storageSecretName": "ad-s3"}


def children(traffic: TrafficState | None = None, **spec) -> list[dict]:
    mdep = ModelDeployment.from_manifest(manifest(name="ad-ctr", uid="u-1", **spec))
    rendered = build_children(mdep, RenderConfig(), traffic)
    for child in rendered:
        schemas.validate(child)
    return rendered


def kind(rendered: list[dict], name: str) -> list[dict]:
    return [c for c in rendered if c["kind"] == name]


def puller(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["initContainers"]
    return container


def test_triton_puller_takes_the_s3_secret_as_environment_by_name() -> None:
    (deployment,) = kind(children(runtime="triton", model=S3), "Deployment")
    assert puller(deployment)["envFrom"] == [{"secretRef": {"name": "ad-s3"}}]
    assert "env" not in puller(deployment)
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert not [v for v in volumes if "secret" in v]      # S3 needs variables only


def test_triton_puller_mounts_the_gcs_key_file_and_points_google_credentials_at_it() -> None:
    model = {"version": "1", "storageUri": "gs://bucket/ad/1", "storageSecretName": "ad-gcs"}
    (deployment,) = kind(children(runtime="triton", model=model), "Deployment")
    container = puller(deployment)
    assert container["envFrom"] == [{"secretRef": {"name": "ad-gcs"}}]
    assert container["env"] == [{"name": "GOOGLE_APPLICATION_CREDENTIALS",
                                 "value": "/var/run/secrets/mlsd.io/storage/gcloud-application-credentials.json"}]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "ad-gcs"
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True
    tritonserver = deployment["spec"]["template"]["spec"]["containers"][0]
    assert volume["name"] not in {m["name"] for m in tritonserver["volumeMounts"]}   # only the puller sees it
    assert "envFrom" not in tritonserver


def test_each_triton_track_uses_its_own_secret() -> None:
    rendered = children(runtime="triton", model=S3, canary=canary("2", model={
        "storageUri": "s3://bucket/ad/2", "storageSecretName": "ad-s3-next"}), traffic=TrafficState(10),
        gateway={"name": "web", "namespace": "gateways"})
    refs = {d["metadata"]["labels"]["mlsd.io/track"]: puller(d)["envFrom"][0]["secretRef"]["name"]
            for d in kind(rendered, "Deployment")}
    assert refs == {"stable": "ad-s3", "canary": "ad-s3-next"}


def test_kserve_predictor_runs_as_a_service_account_listing_the_secret() -> None:
    rendered = children(model=S3)
    (account,) = kind(rendered, "ServiceAccount")
    assert account["secrets"] == [{"name": "ad-s3"}]
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    (isvc,) = kind(rendered, "InferenceService")
    assert isvc["spec"]["predictor"]["serviceAccountName"] == account["metadata"]["name"]
    assert rendered.index(account) < rendered.index(isvc)


def test_kserve_standard_canary_gets_its_own_service_account() -> None:
    rendered = children(model=S3, canary=canary("2", model={"storageUri": "s3://bucket/ad/2",
                                                            "storageSecretName": "ad-s3-next"}),
                        traffic=TrafficState(10))
    accounts = {a["metadata"]["labels"]["mlsd.io/track"]: a for a in kind(rendered, "ServiceAccount")}
    assert {t: a["secrets"][0]["name"] for t, a in accounts.items()} == {"stable": "ad-s3", "canary": "ad-s3-next"}
    (isvc,) = kind(rendered, "InferenceService")
    assert isvc["spec"]["predictor"]["serviceAccountName"] == accounts["stable"]["metadata"]["name"]
    assert isvc["spec"]["canary"][0]["predictor"]["serviceAccountName"] == accounts["canary"]["metadata"]["name"]


def test_kserve_serverless_canary_revision_takes_the_canary_account_or_none() -> None:
    serverless = {"kserve": {"deploymentMode": "Serverless"}}
    with_secret = children(model=S3, canary=canary("2", model={"storageUri": "s3://b/ad/2", "storageSecretName": "next"}),
                           traffic=TrafficState(10), **serverless)
    predictor = kind(with_secret, "InferenceService")[0]["spec"]["predictor"]
    canary_account = next(a for a in kind(with_secret, "ServiceAccount") if a["secrets"] == [{"name": "next"}])
    assert predictor["serviceAccountName"] == canary_account["metadata"]["name"]
    # The stable revision keeps running under its account: it is still rendered.
    assert len(kind(with_secret, "ServiceAccount")) == 2
    without = children(model=S3, canary=canary("2", model={"storageUri": "pvc://m/2"}), traffic=TrafficState(10),
                       **serverless)
    assert "serviceAccountName" not in kind(without, "InferenceService")[0]["spec"]["predictor"]


def test_no_secret_renders_no_account_and_no_reference() -> None:
    for runtime in ("kserve", "triton"):
        rendered = children(runtime=runtime)
        text = json.dumps(rendered)
        assert not kind(rendered, "ServiceAccount")
        assert "secretRef" not in text and '"serviceAccountName"' not in text and '"secret"' not in text


@pytest.mark.parametrize("model,reason", [
    ({"storageUri": "pvc://models/ad/1", "storageSecretName": "creds"}, "only used with an s3:// or gs://"),
    ({"storageUri": "s3://b/ad/1", "storageSecretName": "Not_A_Name"}, "String should match pattern"),
    ({"storageUri": "s3://b/ad/1", "storageSecretName": ""}, "String should match pattern"),
])
def test_bad_secret_references_are_refused(model, reason) -> None:
    _, problems = validate_manifest(manifest(model=model))
    assert [p.path for p in problems] == ["spec.model" if "only used" in reason else "spec.model.storageSecretName"]
    assert any(reason in p.reason for p in problems), problems
