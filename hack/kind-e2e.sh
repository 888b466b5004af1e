#!/usr/bin/env bash
# End-to-end on a local kind cluster: the real images, KServe, the chart, the samples, inference
# through tritonclient and a canary rollout. Needs Docker (or podman with KIND_EXPERIMENTAL_PROVIDER),
# kind, kubectl, Go (for the pinned helm, hack/helm.sh) and the project's .venv (hack/setup.sh).
#
# NOT exercised on this project's own CI: that machine has no container engine. The workflow
# .github/workflows/e2e-kind.yaml runs it on hosts with Docker.
#
#   hack/kind-e2e.sh              create the cluster, run everything, delete the cluster
#   KEEP_CLUSTER=1 hack/kind-e2e.sh   leave the cluster up afterwards (kind delete cluster --name mlsd)
#   SKIP_BUILD=1 ...               reuse images already loaded into the cluster
#
# What it checks, in order (each step fails the script with what it was waiting for):
#  1. cluster from kind-config.yaml; the GPU worker advertises one fake nvidia.com/gpu
#  2. operator and predictor images built and `kind load`ed (no registry involved)
#  3. cert-manager, KServe (Standard mode) and the Gateway API CRDs, pinned
#  4. `helm install` of charts/mlsd-operator; both operator replicas Ready, one holds the Lease
#  5. model repositories built with `mlsd build --small` and copied onto the `models` PVC
#  6. samples applied: video-recommendation (Triton) and ad-click-prediction (KServe) become
#     Ready, and the GPU one (visual-search) is scheduled on the GPU worker only
#  7. inference with the tritonclient example clients: HTTP and gRPC on both Triton tracks,
#     HTTP on the KServe predictor (through port-forwards)
#  8. canary: once v2 is available the HTTPRoute carries its first step (95/5) and status says so
#  9. helm uninstall removes the release but keeps the CRD; the cluster is deleted
set -euo pipefail
cd "$(dirname "$0")/.."

# Pins. kindest/node is pinned in kind-config.yaml.
CERT_MANAGER_VERSION=v1.19.1
KSERVE_VERSION=v0.20.0          # the version whose CRDs the tests validate against
GATEWAY_API_VERSION=v1.6.1      # likewise
CLUSTER="${CLUSTER:-mlsd}"
TAG="${TAG:-e2e}"
OPERATOR_IMAGE="ghcr.io/mlsd-serving/operator:${TAG}"
PREDICTOR_IMAGE="ghcr.io/mlsd-serving/predictor:${TAG}"
TRITON_IMAGE="ghcr.io/mlsd-serving/tritonserver:${TAG}"
DEMO_NS=mlsd-demo
WORK="$(mktemp -d)"

log() { printf '\n[kind-e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 not found: $2"; }

need docker "install Docker (kind runs its nodes as containers)"
need curl "install curl"
need kind "install kind v0.30.0 or newer"
need kubectl "install kubectl 1.34"
hack/helm.sh build
HELM="$(hack/helm.sh path)"
PY=.venv/bin/python
[[ -x "${PY}" ]] || hack/setup.sh

cleanup() {
    local rc=$?
    [[ -n "${PORT_FORWARD_PID:-}" ]] && kill "${PORT_FORWARD_PID}" 2>/dev/null || true
    if [[ ${rc} -ne 0 ]]; then
        log "diagnostics"
        kubectl get nodes,pods -A -o wide || true
        kubectl get mdep -A -o yaml || true
        kubectl -n mlsd-system logs -l app.kubernetes.io/name=mlsd-operator --tail=200 --prefix || true
    fi
    if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then
        kind delete cluster --name "${CLUSTER}" || true
    fi
    rm -rf "${WORK}"
    exit ${rc}
}
trap cleanup EXIT

# Waits until a command succeeds: wait_until SECONDS "what" cmd args...
wait_until() {
    local timeout=$1 what=$2 deadline=$((SECONDS + $1))
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for ${what}"
        sleep 3
    done
}

log "1. cluster ${CLUSTER} from kind-config.yaml"
if ! kind get clusters | grep -qx "${CLUSTER}"; then
    kind create cluster --name "${CLUSTER}" --config kind-config.yaml --wait 180s
fi
kubectl config use-context "kind-${CLUSTER}"
GPU_NODE=$(kubectl get nodes -l mlsd.io/accelerator=gpu -o jsonpath='{.items[0].metadata.name}')
# The documented way to advertise an extended resource; the kubelet keeps it. Pods asking for
# nvidia.com/gpu can then be scheduled there (they get no real GPU: placement demo only).
kubectl patch node "${GPU_NODE}" --subresource=status --type=json \
    -p '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"2"}]'

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "2. images"
    docker build -f operator/Dockerfile -t "${OPERATOR_IMAGE}" .
    docker build -f predictors/Dockerfile -t "${PREDICTOR_IMAGE}" .
    docker build -f predictors/Dockerfile --target triton -t "${TRITON_IMAGE}" .
    kind load docker-image --name "${CLUSTER}" "${OPERATOR_IMAGE}" "${PREDICTOR_IMAGE}" "${TRITON_IMAGE}"
fi

log "3. cert-manager ${CERT_MANAGER_VERSION}, Gateway API ${GATEWAY_API_VERSION}, KServe ${KSERVE_VERSION}"
kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
kubectl -n cert-manager rollout status deploy/cert-manager-webhook --timeout=300s
kubectl apply --server-side -f \
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml"
"${HELM}" upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd \
    --version "${KSERVE_VERSION}" -n kserve --create-namespace --wait
# Standard (raw Deployment) mode: no Knative; the operator uses spec.canary[] there.
"${HELM}" upgrade --install kserve oci://ghcr.io/kserve/charts/kserve \
    --version "${KSERVE_VERSION}" -n kserve --wait --timeout 10m \
    --set kserve.controller.deploymentMode=Standard

log "4. helm install charts/mlsd-operator"
# The Gateway the Triton samples name (no data plane is installed: routes are checked by their
# spec, traffic in step 7 goes to the track Service).
kubectl create namespace gateway-system --dry-run=client -o yaml | kubectl apply -f -
kubectl create namespace "${DEMO_NS}" --dry-run=client -o yaml | kubectl apply -f -
"${HELM}" upgrade --install mlsd-operator charts/mlsd-operator -n mlsd-system --create-namespace \
    --set image.tag="${TAG}" --set predictorImage="${PREDICTOR_IMAGE}" --set tritonImage="${TRITON_IMAGE}" \
    --set gateway=gateway-system/mlsd-gateway --wait --timeout 5m
kubectl -n mlsd-system rollout status deploy/mlsd-operator --timeout=180s
wait_until 60 "a leader in Lease mlsd-system/mlsd-operator" \
    bash -c "[[ -n \$(kubectl -n mlsd-system get lease mlsd-operator -o jsonpath='{.spec.holderIdentity}') ]]"

log "5. model repositories on the models PVC"
for case in video-recommendation ad-click-prediction; do
    for version in 1 2; do
        .venv/bin/mlsd build "${case}" --version "${version}" --small --out "${WORK}/models"
    done
done
kubectl -n "${DEMO_NS}" apply -f - <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: models}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
---
# Writes the repositories; pinned to the CPU worker, where kind's local-path volume then lives.
apiVersion: v1
kind: Pod
metadata: {name: models-loader}
spec:
  nodeSelector: {mlsd.io/accelerator: cpu}
  containers:
    - {name: loader, image: busybox:1.37.0, command: [sleep, "3600"], volumeMounts: [{name: models, mountPath: /models}]}
  volumes: [{name: models, persistentVolumeClaim: {claimName: models}}]
EOF
kubectl -n "${DEMO_NS}" wait pod/models-loader --for=condition=Ready --timeout=180s
for case in video-recommendation ad-click-prediction; do
    kubectl -n "${DEMO_NS}" cp "${WORK}/models/${case}" "models-loader:/models/${case}"
done
kubectl -n "${DEMO_NS}" delete pod models-loader --wait=false

log "6. samples"
kubectl -n "${DEMO_NS}" apply -f manifests/samples/video-recommendation.yaml -f manifests/samples/visual-search.yaml
# The ad sample scales on concurrency, which in KServe Standard mode goes through KEDA; this
# cluster has no KEDA (nor a Prometheus), so it is applied scaling on CPU (HPA) instead.
"${PY}" - <<'PYEOF' | kubectl -n "${DEMO_NS}" apply -f -
import yaml
sample = yaml.safe_load(open("manifests/samples/ad-click-prediction.yaml"))
sample["spec"]["autoscaling"].update(metric="cpu", target=70)
print(yaml.safe_dump(sample))
PYEOF
wait_until 900 "video-recs to be Ready (stable track Available)" bash -c \
    "kubectl -n ${DEMO_NS} get mdep video-recs -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
wait_until 300 "visual-search pods to be scheduled" bash -c \
    "[[ -n \$(kubectl -n ${DEMO_NS} get pods -l mlsd.io/case-study=visual-search -o jsonpath='{.items[*].spec.nodeName}') ]]"
for node in $(kubectl -n "${DEMO_NS}" get pods -l mlsd.io/case-study=visual-search -o jsonpath='{.items[*].spec.nodeName}'); do
    [[ "${node}" == "${GPU_NODE}" ]] || die "a visual-search pod landed on ${node}, not the GPU worker ${GPU_NODE}"
done
wait_until 900 "ad-ctr (KServe) to be Ready" bash -c \
    "kubectl -n ${DEMO_NS} get mdep ad-ctr -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
kubectl -n "${DEMO_NS}" get mdep

log "7. inference through tritonclient (examples/clients), HTTP and gRPC, stable and canary tracks"
kubectl -n "${DEMO_NS}" rollout status deploy/video-recs-v1 --timeout=600s
kubectl -n "${DEMO_NS}" rollout status deploy/video-recs-v2 --timeout=600s
# The stable Service (video-recs) and the canary's own track Service (video-recs-v2).
for service in video-recs video-recs-v2; do
    kubectl -n "${DEMO_NS}" port-forward "svc/${service}" 18000:8000 18001:8001 >"${WORK}/port-forward.log" 2>&1 &
    PORT_FORWARD_PID=$!
    wait_until 60 "the port-forward to ${service}" curl -sf localhost:18000/v2/health/ready
    "${PY}" examples/clients/video_recommendation.py --url localhost:18000
    "${PY}" examples/clients/video_recommendation.py --protocol grpc --url localhost:18001
    kill "${PORT_FORWARD_PID}" && wait "${PORT_FORWARD_PID}" 2>/dev/null || true
    unset PORT_FORWARD_PID
done

# KServe's predictor Service (Standard mode: <isvc>-predictor, port 80 -> the predictor's 8080).
kubectl -n "${DEMO_NS}" port-forward svc/ad-ctr-predictor 18080:80 >"${WORK}/port-forward.log" 2>&1 &
PORT_FORWARD_PID=$!
wait_until 60 "the port-forward to ad-ctr-predictor" curl -sf localhost:18080/v2/health/ready
"${PY}" examples/clients/ad_click_prediction.py --url localhost:18080
kill "${PORT_FORWARD_PID}" && wait "${PORT_FORWARD_PID}" 2>/dev/null || true
unset PORT_FORWARD_PID

log "8. canary rollout"
wait_until 600 "the HTTPRoute to carry the first canary step (95/5)" bash -c \
    "kubectl -n ${DEMO_NS} get httproute video-recs -o jsonpath='{.spec.rules[0].backendRefs[*].weight}' | grep -qx '95 5'"
wait_until 60 "status.canary.trafficPercent=5" bash -c \
    "kubectl -n ${DEMO_NS} get mdep video-recs -o jsonpath='{.status.canary.trafficPercent}' | grep -qx 5"
kubectl -n "${DEMO_NS}" get mdep video-recs

log "9. helm uninstall keeps the CRD"
kubectl delete namespace "${DEMO_NS}" --wait=true --timeout=300s
"${HELM}" uninstall mlsd-operator -n mlsd-system --wait
kubectl get crd modeldeployments.mlsd.io >/dev/null || die "the CRD was deleted by helm uninstall"
[[ -z "$(kubectl get clusterrole,clusterrolebinding -l app.kubernetes.io/instance=mlsd-operator -o name)" ]] ||
    die "cluster-scoped objects of the release survived helm uninstall"
log "all steps passed"
