"""Status decisions, from observed children to conditions and phase (no cluster)."""

from __future__ import annotations

from mlsd_contract.api import ModelDeployment
from mlsd_contract.tracks import TrafficState
from mlsd_operator.controller import _status as st
from tests.conftest import canary, manifest


def mdep(generation=3, **kwargs) -> ModelDeployment:
    obj = manifest(runtime="triton", **kwargs)
    obj["metadata"]["generation"] = generation
    return ModelDeployment.model_validate(obj)


def deployment(available: bool, ready: int, progressing: str = "True", reason: str = "NewReplicaSetAvailable"):
    return {"status": {"readyReplicas": ready, "conditions": [
        {"type": "Available", "status": "True" if available else "False"},
        {"type": "Progressing", "status": progressing, "reason": reason, "message": "msg"}]}}


def conditions(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_pending_before_any_child_exists():
    status = st.desired_status(mdep(), st.Observation({}), TrafficState(None), None)
    assert status["phase"] == "Pending"
    assert conditions(status)["Ready"] == ("False", "WaitingForPods")
    assert status["observedGeneration"] == 3


def test_ready_when_stable_is_available():
    observed = st.Observation({"1": st.observe_deployment("1", deployment(True, 2))})
    status = st.desired_status(mdep(), observed, TrafficState(None), None)
    assert status["phase"] == "Ready"
    assert conditions(status) == {"Ready": ("True", "Available"), "Progressing": ("False", "Stable"),
                                  "Degraded": ("False", "AsExpected")}
    assert status["stable"] == {"version": "1", "precision": "fp32", "readyReplicas": 2, "trafficPercent": 100}
    assert status["replicas"] == 2
    assert status["selector"] == "mlsd.io/model-deployment=demo,mlsd.io/version=1"
    assert status["url"] == "http://demo.team-a.svc.cluster.local"


def test_degraded_when_a_rollout_exceeds_its_deadline():
    observed = st.Observation({"1": st.observe_deployment("1", deployment(False, 0, "False", "ProgressDeadlineExceeded"))})
    status = st.desired_status(mdep(), observed, TrafficState(None), None)
    assert status["phase"] == "Degraded"
    assert conditions(status)["Degraded"] == ("True", "DeploymentFailed")
    assert "ProgressDeadlineExceeded" in next(c for c in status["conditions"] if c["type"] == "Degraded")["message"]


def test_canary_tracks_progress_and_keeps_its_counters():
    obj = mdep(canary=canary("2"), gateway={"name": "gw"})
    observed = st.Observation({"1": st.observe_deployment("1", deployment(True, 2)),
                               "2": st.observe_deployment("2", deployment(True, 1))})
    current = {"canary": {"version": "2", "step": 1, "failedAnalyses": 1, "stepStartedAt": "t0", "trafficPercent": 50}}
    status = st.desired_status(obj, observed, TrafficState(50), current)
    assert status["phase"] == "Progressing"
    assert conditions(status)["Progressing"] == ("True", "CanaryActive")
    assert status["canary"] | {} == {"version": "2", "precision": "fp32", "readyReplicas": 1, "trafficPercent": 50,
                                     "step": 1, "failedAnalyses": 1, "stepStartedAt": "t0"}
    assert status["stable"]["trafficPercent"] == 50


def test_a_new_canary_version_resets_counters():
    obj = mdep(canary=canary("3"), gateway={"name": "gw"})
    current = {"canary": {"version": "2", "step": 2, "failedAnalyses": 1, "stepStartedAt": "t0"}}
    status = st.desired_status(obj, st.Observation({}), TrafficState(0), current)
    assert (status["canary"]["step"], status["canary"]["failedAnalyses"]) == (0, 0)
    assert "stepStartedAt" not in status["canary"]


def test_transition_time_moves_only_when_status_flips():
    first = st.set_condition([], "Ready", False, "WaitingForPods", "a", 1)
    same = st.set_condition(first, "Ready", False, "WaitingForPods", "b", 1)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    flipped = st.set_condition([{**first[0], "lastTransitionTime": "2000-01-01T00:00:00Z"}], "Ready", True, "Available", "c", 1)
    assert flipped[0]["lastTransitionTime"] != "2000-01-01T00:00:00Z"


def test_status_patch_is_none_when_nothing_changed():
    observed = st.Observation({"1": st.observe_deployment("1", deployment(True, 2))})
    status = st.desired_status(mdep(), observed, TrafficState(None), None)
    again = st.desired_status(mdep(), observed, TrafficState(None), status)
    assert st.status_patch(status, again) is None
    more = st.desired_status(mdep(), st.Observation({"1": st.observe_deployment("1", deployment(True, 3))}),
                             TrafficState(None), status)
    patch = st.status_patch(status, more)
    assert set(patch) == {"replicas", "stable", "conditions"}


def test_kserve_without_controller_says_so():
    obj = ModelDeployment.model_validate(manifest())
    observed = st.Observation(st.observe_inference_service(["1"], {"spec": {}}))
    status = st.desired_status(obj, observed, TrafficState(None), None)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "WaitingForKServe" and "KServe controller" in ready["message"]


def _isvc(canaries):
    return {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PredictorReady", "status": "True"}],
                       "components": {"predictor": {}}, "canaryStatuses": canaries}}


def test_kserve_canary_is_ready_by_its_own_entry_only():
    """KServe 0.20 Standard mode: one canaryStatuses entry per spec.canary[] entry, by name."""
    someone_else = st.observe_inference_service(["1", "2"], _isvc([{"name": "v3", "ready": True}]),
                                                canary_names={"2": "v2"})
    assert not someone_else["2"].available
    own = st.observe_inference_service(["1", "2"], _isvc([{"name": "v3", "ready": True}, {"name": "v2", "ready": True}]),
                                       canary_names={"2": "v2"})
    assert own["2"].available and own["1"].available


def test_kserve_ready_replicas_come_from_kserves_deployments():
    def deployment(ready):
        return {"status": {"readyReplicas": ready, "availableReplicas": ready}}

    tracks = st.observe_inference_service(["1", "2"], _isvc([{"name": "v2", "ready": True}]),
                                          canary_names={"2": "v2"}, deployments={"1": deployment(3), "2": deployment(1)})
    assert (tracks["1"].ready_replicas, tracks["2"].ready_replicas) == (3, 1)
    # Serverless (Knative revisions: no such Deployments): the conditions alone, as before.
    serverless = st.observe_inference_service(["1", "2"], _isvc([]))
    assert serverless["2"].available and serverless["1"].ready_replicas == 1


def test_kserve_deployment_names_follow_kserve():
    from mlsd_operator.builders import kserve_deployments

    standard = ModelDeployment.model_validate(manifest(name="ads"))
    assert kserve_deployments(standard, ["1", "2"]) == {"1": "ads-predictor", "2": "ads-v2-predictor"}
    serverless = ModelDeployment.model_validate(manifest(name="ads", kserve={"deploymentMode": "Serverless"}))
    assert kserve_deployments(serverless, ["1"]) == {}


def test_failed_status_for_an_unrunnable_spec():
    status = st.failed_status(mdep(), None, st.Reason.INVALID_SPEC, "file:// cannot be pulled")
    assert status["phase"] == "Failed"
    assert conditions(status)["Ready"] == ("False", "InvalidSpec")
    waiting = st.failed_status(mdep(), None, st.Reason.DEPENDENCY_MISSING, "install KServe")
    assert waiting["phase"] == "Pending"


def test_a_refused_write_is_degraded_not_failed():
    status = st.failed_status(mdep(), None, st.Reason.APPLY_FAILED, "exceeded quota")
    assert status["phase"] == "Degraded"
    assert conditions(status)["Ready"] == ("False", "ApplyFailed")


def crashed_pod(container: str, message: str, exit_code: int = 1, init: bool = False, last: bool = True):
    state = {"terminated": {"exitCode": exit_code, "message": message}}
    status = {"name": container, **({"lastState": state, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                                   if last else {"state": state})}
    return {"status": {("initContainerStatuses" if init else "containerStatuses"): [status]}}


REFUSED = ("Traceback (most recent call last):\n  ...\nmlsd predictor: refusing to serve: /mnt/models/model.onnx: "
           "self-check failed: output 'embedding' differs from what the build recorded by up to 0.1 (tolerance 0.005)")


def test_a_refused_model_is_found_in_the_pods_termination_message():
    assert st.refusal([crashed_pod("kserve-container", REFUSED)]) == (
        "kserve-container: " + REFUSED.splitlines()[-1])
    pull = "mlsd pull: /mnt/pvc/x/triton/int8: the card marks this variant not servable"
    assert st.refusal([crashed_pod("model-puller", pull, exit_code=2, init=True, last=False)]) == f"model-puller: {pull}"
    # Crashes that are not refusals (OOM, a bug) and clean exits are left to the workload's own status.
    assert st.refusal([crashed_pod("kserve-container", "Killed", exit_code=137)]) is None
    assert st.refusal([crashed_pod("kserve-container", REFUSED, exit_code=0)]) is None
    assert st.refusal([{"status": {}}, {}]) is None


def test_a_refused_canary_degrades_the_model_deployment_while_stable_serves():
    md = mdep(canary=canary())
    unavailable = st.observe_deployment("2", deployment(False, 0))
    refused = st.with_refusal(unavailable, [crashed_pod("kserve-container", REFUSED)])
    assert refused.refused and refused.failure.startswith("model refused: kserve-container: mlsd predictor")
    assert st.with_refusal(st.observe_deployment("2", deployment(True, 1)), [crashed_pod("c", REFUSED)]).failure is None
    observed = st.Observation({"1": st.observe_deployment("1", deployment(True, 2)), "2": refused})
    status = st.desired_status(md, observed, TrafficState(0), None)
    assert conditions(status)["Ready"] == ("True", "Available")
    assert conditions(status)["Degraded"] == ("True", "ModelRefused")
    message = next(c["message"] for c in status["conditions"] if c["type"] == "Degraded")
    assert message.startswith("version 2: model refused") and "self-check failed" in message


def test_a_status_patch_writes_only_the_nested_fields_that_changed():
    """A reconcile that read the object before the rollout tick's last write computes its status from
    the old step: its patch must carry only what it changed (ready replicas), never the step."""
    stale = {"phase": "Progressing", "canary": {"version": "2", "step": 1, "trafficPercent": 20, "failedAnalyses": 0,
                                                "readyReplicas": 1, "lastAnalysis": {"result": "Pass"}}}
    desired = {"phase": "Progressing", "canary": {**stale["canary"], "readyReplicas": 2}}
    assert st.status_patch(stale, desired) == {"canary": {"readyReplicas": 2}}
    # A new canary version replaces the old one's fields; ones it does not set are removed.
    fresh = {"phase": "Progressing", "canary": {"version": "3", "step": 0, "trafficPercent": 0, "failedAnalyses": 0,
                                                "readyReplicas": 0}}
    assert st.status_patch(stale, fresh) == {"canary": {"version": "3", "step": 0, "trafficPercent": 0,
                                                        "readyReplicas": 0, "lastAnalysis": None}}


def test_a_stalled_canary_says_progressing_false_and_stays_in_status():
    obj = mdep(canary=canary("2"), gateway={"name": "gw"})
    observed = st.Observation({"1": st.observe_deployment("1", deployment(True, 2)),
                               "2": st.observe_deployment("2", deployment(True, 1))})
    current = {"canary": {"version": "2", "step": 0, "stepStartedAt": "t0", "trafficPercent": 10, "stalled": True}}
    status = st.desired_status(obj, observed, TrafficState(10), current)
    assert conditions(status)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    message = next(c for c in status["conditions"] if c["type"] == "Progressing")["message"]
    assert "progressDeadline 10m" in message and "10%" in message
    assert status["canary"]["stalled"] is True and status["phase"] == "Progressing"
