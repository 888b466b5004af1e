"""The `ModelDeployment` API (mlsd.io/v1alpha1): the single source of truth for the CRD schema."""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from .._names import TRAITS, CaseStudy, Precision, Runtime
from ._rules import ApiModel, Rule

GROUP = "mlsd.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ("mdep",)


class Accelerator(str, Enum):
    CPU = "cpu"
    GPU = "gpu"
    AUTO = "auto"


class ScaleMetric(str, Enum):
    CONCURRENCY = "concurrency"
    RPS = "rps"
    CPU = "cpu"
    MEMORY = "memory"


class KServeDeploymentMode(str, Enum):
    STANDARD = "Standard"       # plain Deployments + HPA/KEDA; canary through spec.canary[] (KServe >= 0.20)
    SERVERLESS = "Serverless"   # Knative revisions; canary through canaryTrafficPercent


VERSION_PATTERN = r"^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,30}[a-zA-Z0-9])?$"
# "No whitespace" spelled the same for the API server (Go RE2: \s is ASCII only) and pydantic (Rust
# regex: \s is Unicode): no separator (Z: spaces like U+00A0, U+2028) and no control character (Cc:
# \t \n \v \f \r U+0085...). With [^\s] a URI holding U+00A0 passed the API server and failed `mlsd validate`.
VISIBLE = r"[^\p{Z}\p{Cc}]"
STORAGE_URI_PATTERN = rf"^(s3|gs|pvc|file)://{VISIBLE}+$"
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


_DURATION_NANOS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
MAX_DURATION_NANOS = 2**63 - 1   # Go's time.Duration, which CEL's duration() parses into (about 292 years)


def _nanos(text: str) -> int:
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 2m, 1m30s)")
    return sum(int(n) * _DURATION_NANOS[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h)", text))


def parse_duration(text: str) -> float:
    """Seconds in a Kubernetes-style duration such as `90s`, `1m30s` or `500ms`."""
    return _nanos(text) / 10**9


def cel_duration(text: str) -> float:
    """`parse_duration` as a rule's `duration(self.x)` sees it: CEL parses into Go's time.Duration
    and errs beyond it, so the API server rejects e.g. `9999999999h` there, and so must the check."""
    nanos = _nanos(text)
    if nanos > MAX_DURATION_NANOS:
        raise ValueError(f"duration {text!r} is out of range (at most about 292 years)")
    return nanos / 10**9


def _defaulted(model: type[ApiModel]) -> Any:
    """A nested object that defaults to its own defaults, spelled out in the CRD: the API server
    checks a default against the CEL rules as written, before nested defaults apply, so `{}` would
    fail e.g. `self.maxReplicas >= self.minReplicas`."""
    return Field(default_factory=model, json_schema_extra=lambda schema: schema.update(default=model().to_wire()))


_DOTDOT_SEGMENT = "^[a-z0-9]+://(.*/)?[.][.](/.*)?$"
"""A URI whose path holds a `..` segment, spelled once for CEL (RE2) and for Python's `re`."""


def _has_dotdot_segment(uri: str) -> bool:
    return re.match(_DOTDOT_SEGMENT, uri) is not None


def _no_dotdot_cel(field: str) -> str:
    """CEL for "`self.<field>` holds no `..` path segment" (the field must be set)."""
    return f"!self.{field}.matches('{_DOTDOT_SEGMENT}')"


class ModelRef(ApiModel):
    """One model version: where its repository lives and which precision variant to serve."""

    version: Annotated[str, Field(min_length=1, max_length=32, pattern=VERSION_PATTERN,
                                  description="Model version, as written by `mlsd build --version`.")]
    storage_uri: Annotated[str, Field(max_length=512, pattern=STORAGE_URI_PATTERN,
                                      description="Root of the version's model repository "
                                                  "(s3://, gs://, pvc://claim/path or file://).")]
    precision: Annotated[Precision, Field(description="Variant to serve: fp32, fp16 or int8.")] = Precision.FP32
    storage_secret_name: Annotated[str | None, Field(
        max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="Secret (same namespace, by name) holding the credentials for an s3:// or gs:// "
                    "storageUri, in KServe's layout: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                    "(+ AWS_ENDPOINT_URL, AWS_DEFAULT_REGION) or gcloud-application-credentials.json. "
                    "The operator never reads it: pods reference it.")] = None

    rules: ClassVar = (
        Rule(cel=_no_dotdot_cel("storageUri"),
             message="storageUri must not contain '..' path segments",
             check=lambda m: not _has_dotdot_segment(m.storage_uri),
             field_path=".storageUri"),
        Rule(cel="!has(self.storageSecretName) || self.storageUri.matches('^(s3|gs)://')",
             message="storageSecretName is only used with an s3:// or gs:// storageUri "
                     "(a pvc:// or file:// repository needs no credentials)",
             check=lambda m: m.storage_secret_name is None or m.storage_uri.startswith(("s3://", "gs://")),
             field_path=".storageSecretName"),
    )


class GpuSpec(ApiModel):
    count: Annotated[int, Field(ge=1, le=8, description="GPUs per replica (limits nvidia.com/gpu).")] = 1
    product: Annotated[str | None, Field(max_length=63, pattern=LABEL_VALUE_PATTERN,
                                         description="GPU product label value, e.g. NVIDIA-L4; "
                                                     "selects nodes labelled nvidia.com/gpu.product.")]= None


class Toleration(ApiModel):
    key: Annotated[str | None, Field(max_length=253)] = None
    operator: Literal["Exists", "Equal"] | None = None
    value: Annotated[str | None, Field(max_length=63)] = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


Quantity = Annotated[str, Field(max_length=32, pattern=QUANTITY_PATTERN)]


class Resources(ApiModel):
    """Container resources; overrides the case study's defaults key by key."""

    requests: Annotated[dict[str, Quantity] | None, Field(max_length=8)] = None
    limits: Annotated[dict[str, Quantity] | None, Field(max_length=8)] = None


class Placement(ApiModel):
    accelerator: Annotated[Accelerator, Field(description="cpu, gpu, or auto (decided from the case "
                                                          "study; the reason is written in an annotation).")] = Accelerator.CPU
    gpu: GpuSpec | None = None
    resources: Resources | None = None
    node_selector: Annotated[dict[str, Annotated[str, Field(max_length=63)]] | None, Field(max_length=16)] = None
    tolerations: Annotated[list[Toleration] | None, Field(max_length=16)] = None

    rules: ClassVar = (
        Rule(cel="!has(self.gpu) || self.accelerator != 'cpu'",
             message="placement.gpu is only allowed with accelerator gpu or auto",
             check=lambda m: m.gpu is None or m.accelerator != Accelerator.CPU,
             field_path=".gpu"),
    )


class Autoscaling(ApiModel):
    min_replicas: Annotated[int, Field(ge=0, le=1000, description="0 (scale to zero) needs KServe Serverless.")] = 1
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    metric: ScaleMetric = ScaleMetric.CONCURRENCY
    target: Annotated[int, Field(ge=1, le=100000, description="Target per replica: in-flight requests, "
                                                               "requests/s, or utilisation percent.")] = 8

    rules: ClassVar = (
        Rule(cel="self.maxReplicas >= self.minReplicas",
             message="autoscaling.maxReplicas must be >= autoscaling.minReplicas",
             check=lambda m: m.max_replicas >= m.min_replicas,
             field_path=".maxReplicas"),
        Rule(cel="!(self.metric in ['cpu', 'memory']) || self.target <= 100",
             message="autoscaling.target is a utilisation percent (1-100) for metric cpu or memory",
             check=lambda m: m.metric not in (ScaleMetric.CPU, ScaleMetric.MEMORY) or m.target <= 100,
             field_path=".target"),
    )


class Batching(ApiModel):
    max_batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    max_latency_ms: Annotated[int, Field(ge=0, le=10000, description="Longest wait to fill a batch.")] = 5


class Analysis(ApiModel):
    """Thresholds the canary must meet at every step, measured on live Prometheus metrics."""

    min_requests: Annotated[int, Field(ge=0, le=10_000_000,
                                       description="Canary requests needed before a verdict; fewer -> wait.")] = 100
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    max_latency_p99_ms: Annotated[float, Field(gt=0, le=600_000)] = 100.0
    max_prediction_drift: Annotated[float, Field(ge=0, le=10,
                                                 description="Population stability index of canary vs stable scores.")] = 0.2
    failure_limit: Annotated[int, Field(ge=1, le=100, description="Failed analyses before rollback.")] = 2


class DeadlineAction(str, Enum):
    HOLD = "hold"            # stay at the step's traffic, Progressing=False, until evidence comes
    ROLLBACK = "rollback"    # roll back: a canary that cannot be judged is not promoted


class Canary(ApiModel):
    model: ModelRef
    steps: Annotated[list[Annotated[int, Field(ge=1, le=100)]],
                     Field(min_length=1, max_length=20,
                           description="Percent of traffic at each step; promotion follows the last step.")] = [10, 25, 50]
    interval: Annotated[str, Field(max_length=16, pattern=DURATION_PATTERN,
                                   description="Time at each step before the analysis decides.")] = "60s"
    analysis: Annotated[Analysis, _defaulted(Analysis)]
    progress_deadline: Annotated[str, Field(
        max_length=16, pattern=DURATION_PATTERN,
        description="Longest a step may go without a verdict (too few canary requests to pass or fail "
                    "it), counted from the step's start; then onProgressDeadline applies.")] = "10m"
    on_progress_deadline: Annotated[DeadlineAction, Field(
        description="hold: keep the step's traffic and report Progressing=False (ProgressDeadlineExceeded) "
                    "until evidence comes; rollback: roll the canary back.")] = DeadlineAction.HOLD

    rules: ClassVar = (
        Rule(cel="self.steps.isSorted() && self.steps.all(x, self.steps.exists_one(y, y == x))",
             message="canary.steps must be strictly increasing",
             check=lambda m: all(a < b for a, b in zip(m.steps, m.steps[1:])),
             field_path=".steps"),
        Rule(cel="duration(self.interval) >= duration('1s')",
             message="canary.interval must be at least 1s",
             check=lambda m: cel_duration(m.interval) >= 1.0,
             field_path=".interval"),
        Rule(cel="duration(self.progressDeadline) >= duration(self.interval)",
             message="canary.progressDeadline must be at least canary.interval (a step is judged after its interval)",
             check=lambda m: cel_duration(m.progress_deadline) >= cel_duration(m.interval),
             field_path=".progressDeadline"),
    )


class Shadow(ApiModel):
    model: ModelRef
    percent: Annotated[int, Field(ge=1, le=100, description="Share of requests mirrored; responses discarded.")] = 100


class GatewayRef(ApiModel):
    """The Gateway API Gateway that Triton routes attach to."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: Annotated[str | None, Field(max_length=63)] = None
    section_name: Annotated[str | None, Field(max_length=253)] = None


class KServeOptions(ApiModel):
    deployment_mode: KServeDeploymentMode = KServeDeploymentMode.STANDARD


CRON_PATTERN = rf"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|({VISIBLE}+[ \t]+){{4}}{VISIBLE}+)$"
DATA_URI_PATTERN = rf"^(pvc|file)://{VISIBLE}+$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"

CACHEABLE = tuple(case for case, traits in TRAITS.items() if traits.content_only)
"""Case studies whose answer depends only on the request's content (an image, a post): caching is
right there. Recommendations and ad CTRs are personalised and read real-time context; a cached
answer would be stale or someone else's (docs/case-studies/)."""


def _duration_rule(field: str, minimum: str, seconds: float) -> Rule:
    return Rule(cel=f"duration(self.{field}) >= duration('{minimum}')",
                message=f"{field} must be at least {minimum}",
                check=lambda m: cel_duration(getattr(m, _snake(field))) >= seconds,
                field_path=f".{field}")


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda x: "_" + x.group(1).lower(), name)


class BatchPrediction(ApiModel):
    """Offline scoring of a dataset with the stable model: a CronJob when `schedule` is set, and a
    one-off Job whenever the annotation mlsd.io/batch-run gets a new value."""

    schedule: Annotated[str | None, Field(max_length=64, pattern=CRON_PATTERN,
                                          description="Cron schedule (e.g. '0 2 * * *'); none: on demand only.")] = None
    input: Annotated[str, Field(max_length=512, pattern=DATA_URI_PATTERN,
                                description="Dataset: an .npz with one array per model input "
                                            "(pvc://claim/path in a cluster, file:// for `mlsd batch`).")]
    output: Annotated[str, Field(max_length=512, pattern=DATA_URI_PATTERN,
                                 description="Results directory: runs/<id>/ appear complete or not at "
                                             "all; `latest` points at the newest complete run.")]
    batch_size: Annotated[int, Field(ge=1, le=4096, description="Rows per model execution.")] = 256
    parallelism: Annotated[int, Field(ge=1, le=64, description="Pods, each scoring one contiguous shard.")] = 1
    active_deadline: Annotated[str, Field(max_length=16, pattern=DURATION_PATTERN,
                                          description="A run still going after this is failed.")] = "6h"
    keep_runs: Annotated[int, Field(ge=1, le=100, description="Complete runs kept in the output.")] = 3

    rules: ClassVar = (
        Rule(cel="self.input != self.output",
             message="batch.output must differ from batch.input",
             check=lambda m: m.input != m.output,
             field_path=".output"),
        Rule(cel=f"{_no_dotdot_cel('output')} && {_no_dotdot_cel('input')}",
             message="batch.input and batch.output must not contain '..' path segments",
             check=lambda m: not _has_dotdot_segment(m.input) and not _has_dotdot_segment(m.output),
             field_path=".output"),
    )


class PredictionCache(ApiModel):
    """An in-process cache in each predictor replica, keyed on the canonical input row and the model
    version and precision (a promotion never serves the previous version's answers)."""

    size: Annotated[int, Field(ge=1, le=10_000_000, description="Entries (input rows) per replica.")] = 10_000
    ttl: Annotated[str, Field(max_length=16, pattern=DURATION_PATTERN,
                              description="How long an answer may be served from the cache.")] = "10m"

    rules: ClassVar = (_duration_rule("ttl", "1s", 1.0),)


class DriftMonitoring(ApiModel):
    """Live input and score distributions of the stable track against the model card's references."""

    window: Annotated[str, Field(max_length=16, pattern=DURATION_PATTERN,
                                 description="Traffic compared with the reference at each check.")] = "1h"
    interval: Annotated[str, Field(max_length=16, pattern=DURATION_PATTERN,
                                   description="Time between checks.")] = "5m"
    threshold: Annotated[float, Field(gt=0, le=10, description="PSI above which a feature has drifted.")] = 0.2
    min_samples: Annotated[int, Field(ge=10, le=100_000_000,
                                      description="Rows needed in the window before a verdict.")] = 1000

    rules: ClassVar = (_duration_rule("window", "1m", 60.0), _duration_rule("interval", "10s", 10.0))


class EnvVar(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=ENV_NAME_PATTERN)]
    value: Annotated[str, Field(max_length=4096)]


class RetrainingJob(ApiModel):
    """The Job started when drift is detected; the operator adds MLSD_* variables describing it."""

    image: Annotated[str, Field(min_length=1, max_length=512)]
    command: Annotated[list[Annotated[str, Field(max_length=4096)]] | None, Field(max_length=64)] = None
    args: Annotated[list[Annotated[str, Field(max_length=4096)]] | None, Field(max_length=256)] = None
    env: Annotated[list[EnvVar] | None, Field(max_length=64, description="Plain values only.")] = None
    env_from_secrets: Annotated[list[Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]] | None,
                                Field(max_length=8, description="Secrets (by name) exposed as environment "
                                                                "variables; their values never pass the operator.")] = None
    service_account_name: Annotated[str | None, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)] = None
    resources: Resources | None = None
    output: Annotated[str | None, Field(max_length=512, pattern=rf"^pvc://{VISIBLE}+$",
                                        description="Model store the Job writes the next version into "
                                                    "(pvc://claim/path), mounted read-write at MLSD_OUTPUT_DIR.")] = None
    backoff_limit: Annotated[int, Field(ge=0, le=10)] = 1
    active_deadline: Annotated[str, Field(max_length=16, pattern=DURATION_PATTERN)] = "6h"

    rules: ClassVar = (
        Rule(cel=f"!has(self.output) || {_no_dotdot_cel('output')}",
             message="retraining.job.output must not contain '..' path segments",
             check=lambda m: m.output is None or not _has_dotdot_segment(m.output),
             field_path=".output"),
    )


class Webhook(ApiModel):
    url: Annotated[str, Field(max_length=2048, pattern=rf"^https?://{VISIBLE}+$",
                              description="Receives a JSON POST describing the drift.")]


class Retraining(ApiModel):
    """What drift starts, at most once per cooldown: a Job, or a POST to a webhook."""

    cooldown: Annotated[str, Field(max_length=16, pattern=DURATION_PATTERN,
                                   description="Least time between two retraining triggers.")] = "24h"
    job: RetrainingJob | None = None
    webhook: Webhook | None = None

    rules: ClassVar = (
        Rule(cel="has(self.job) != has(self.webhook)",
             message="retraining needs exactly one of job or webhook",
             check=lambda m: (m.job is None) != (m.webhook is None)),
        _duration_rule("cooldown", "1m", 60.0),
    )


class ModelDeploymentSpec(ApiModel):
    case_study: CaseStudy
    runtime: Runtime = Runtime.KSERVE
    model: Annotated[ModelRef, Field(description="The stable track.")]
    placement: Annotated[Placement, _defaulted(Placement)]
    autoscaling: Annotated[Autoscaling, _defaulted(Autoscaling)]
    batching: Batching | None = None
    canary: Annotated[Canary | None, Field(description="A second version under progressive delivery.")] = None
    shadow: Annotated[Shadow | None, Field(description="Mirrored traffic; responses discarded.")] = None
    kserve: Annotated[KServeOptions, _defaulted(KServeOptions)]
    gateway: Annotated[GatewayRef | None, Field(description="Gateway for the Triton HTTPRoute; defaults "
                                                            "to the operator's --gateway.")] = None
    batch: Annotated[BatchPrediction | None, Field(description="Scheduled or on-demand offline scoring.")] = None
    cache: Annotated[PredictionCache | None, Field(description="Per-replica prediction cache (KServe runtime; "
                                                               "visual-search and harmful-content only).")] = None
    drift: Annotated[DriftMonitoring | None, Field(description="Compare live traffic with the model card's "
                                                               "reference distributions.")] = None
    retraining: Annotated[Retraining | None, Field(description="Started when drift is detected (needs drift).")] = None

    rules: ClassVar = (
        Rule(cel="!has(self.canary) || self.canary.model.version != self.model.version",
             message="canary.model.version must differ from model.version",
             check=lambda s: s.canary is None or s.canary.model.version != s.model.version,
             field_path=".canary.model.version"),
        Rule(cel="!has(self.shadow) || self.shadow.model.version != self.model.version",
             message="shadow.model.version must differ from model.version",
             check=lambda s: s.shadow is None or s.shadow.model.version != s.model.version,
             field_path=".shadow.model.version"),
        Rule(cel="!has(self.shadow) || !has(self.canary) || self.shadow.model.version != self.canary.model.version",
             message="shadow.model.version must differ from canary.model.version",
             check=lambda s: s.shadow is None or s.canary is None
             or s.shadow.model.version != s.canary.model.version,
             field_path=".shadow.model.version"),
        Rule(cel="!has(self.shadow) || self.runtime == 'triton'",
             message="shadow needs runtime triton: KServe has no request mirroring "
                     "(its logger sends CloudEvents, not inference requests)",
             check=lambda s: s.shadow is None or s.runtime == Runtime.TRITON,
             field_path=".shadow"),
        Rule(cel="self.autoscaling.minReplicas >= 1 || "
                 "(self.runtime == 'kserve' && self.kserve.deploymentMode == 'Serverless')",
             message="autoscaling.minReplicas 0 (scale to zero) needs runtime kserve with "
                     "deploymentMode Serverless; elsewhere it would silently become 1",
             check=lambda s: s.autoscaling.min_replicas >= 1 or (
                 s.runtime == Runtime.KSERVE and s.kserve.deployment_mode == KServeDeploymentMode.SERVERLESS),
             field_path=".autoscaling.minReplicas"),
        Rule(cel=f"!has(self.cache) || self.caseStudy in {[c.value for c in CACHEABLE]}",
             message=f"cache is refused for personalised case studies "
                     f"({', '.join(c.value for c in CaseStudy if c not in CACHEABLE)}): "
                     "their inputs carry per-user, real-time context, so a cached answer is stale or another "
                     f"request's; cache {' or '.join(c.value for c in CACHEABLE)}, whose answers depend on "
                     "content only",
             check=lambda s: s.cache is None or s.case_study in CACHEABLE,
             field_path=".cache"),
        Rule(cel="!has(self.cache) || self.runtime == 'kserve'",
             message="cache needs runtime kserve (the mlsd predictor); Triton's response cache is set in "
                     "the model configuration instead",
             check=lambda s: s.cache is None or s.runtime == Runtime.KSERVE,
             field_path=".cache"),
        Rule(cel="!has(self.drift) || self.runtime == 'kserve'",
             message="drift needs runtime kserve: the mlsd predictor exports the per-feature histograms it "
                     "is computed from; tritonserver's ONNX backend exports only its own nv_* series",
             check=lambda s: s.drift is None or s.runtime == Runtime.KSERVE,
             field_path=".drift"),
        Rule(cel="!has(self.retraining) || has(self.drift)",
             message="retraining is triggered by drift: set spec.drift too",
             check=lambda s: s.retraining is None or s.drift is not None,
             field_path=".retraining"),
    )


class ConditionStatus(str, Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    type: Annotated[str, Field(max_length=64)]
    status: ConditionStatus
    reason: Annotated[str | None, Field(max_length=128)] = None
    message: Annotated[str | None, Field(max_length=4096)] = None
    observed_generation: int | None = None
    last_transition_time: Annotated[str | None, Field(max_length=64)] = None


class Phase(str, Enum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class TrackStatus(ApiModel):
    version: Annotated[str | None, Field(max_length=32)] = None
    precision: Precision | None = None
    ready_replicas: int | None = None
    traffic_percent: Annotated[int | None, Field(ge=0, le=100)] = None


class AnalysisResult(ApiModel):
    at: Annotated[str | None, Field(max_length=64)] = None
    passed: bool | None = None
    requests: float | None = None
    error_rate: float | None = None
    latency_p99_ms: float | None = None
    prediction_drift: float | None = None
    reason: Annotated[str | None, Field(max_length=1024)] = None


class CanaryStatus(ApiModel):
    version: Annotated[str | None, Field(max_length=32)] = None
    precision: Precision | None = None
    ready_replicas: int | None = None
    traffic_percent: Annotated[int, Field(ge=0, le=100)] = 0
    step: Annotated[int, Field(ge=0, le=20)] = 0
    step_started_at: Annotated[str | None, Field(max_length=64)] = None
    failed_analyses: Annotated[int, Field(ge=0)] = 0
    paused: bool | None = None
    stalled: bool | None = None
    """Past spec.canary.progressDeadline without a verdict, holding (onProgressDeadline: hold)."""
    last_analysis: AnalysisResult | None = None


class ShadowStatus(ApiModel):
    version: Annotated[str | None, Field(max_length=32)] = None
    ready_replicas: int | None = None
    percent: int | None = None
    at: Annotated[str | None, Field(max_length=64)] = None
    requests: float | None = None
    prediction_drift: Annotated[float | None, Field(description="PSI of shadow vs stable score histograms: "
                                                                "distribution agreement, not per-request.")] = None


class Outcome(str, Enum):
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"


class HistoryEntry(ApiModel):
    version: Annotated[str, Field(max_length=32)]
    outcome: Outcome
    at: Annotated[str | None, Field(max_length=64)] = None
    reason: Annotated[str | None, Field(max_length=1024)] = None


class FeatureDrift(ApiModel):
    feature: Annotated[str, Field(max_length=128)]
    psi: float


class DriftStatus(ApiModel):
    at: Annotated[str | None, Field(max_length=64)] = None
    version: Annotated[str | None, Field(max_length=32)] = None
    samples: float | None = None
    drifted: bool | None = None
    features: Annotated[list[FeatureDrift] | None, Field(max_length=10,
                                                         description="Worst features first (PSI).")] = None
    reason: Annotated[str | None, Field(max_length=1024)] = None


class RetrainingStatus(ApiModel):
    count: Annotated[int, Field(ge=0)] = 0
    last_triggered_at: Annotated[str | None, Field(max_length=64)] = None
    last_job: Annotated[str | None, Field(max_length=63)] = None
    last_reason: Annotated[str | None, Field(max_length=1024)] = None


class BatchStatus(ApiModel):
    last_run: Annotated[str | None, Field(max_length=63, description="The mlsd.io/batch-run value last started.")] = None
    last_job: Annotated[str | None, Field(max_length=63)] = None
    started_at: Annotated[str | None, Field(max_length=64)] = None


class ModelDeploymentStatus(ApiModel):
    phase: Phase | None = None
    observed_generation: int | None = None
    url: Annotated[str | None, Field(max_length=512)] = None
    replicas: int | None = None
    selector: Annotated[str | None, Field(max_length=1024)] = None
    conditions: Annotated[list[Condition] | None, Field(max_length=16)] = None
    stable: TrackStatus | None = None
    canary: CanaryStatus | None = None
    shadow: ShadowStatus | None = None
    history: Annotated[list[HistoryEntry] | None, Field(max_length=50)] = None
    drift: DriftStatus | None = None
    retraining: RetrainingStatus | None = None
    batch: BatchStatus | None = None


class ObjectMeta(ApiModel):
    """The part of metadata the builders read; everything else passes through untouched."""

    model_config = ApiModel.model_config | {"extra": "allow"}

    name: Annotated[str, Field(min_length=1, max_length=63)]
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class ModelDeployment(ApiModel):
    api_version: Literal["mlsd.io/v1alpha1"] = API_VERSION
    kind: Literal["ModelDeployment"] = KIND
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    @classmethod
    def from_manifest(cls, obj: dict[str, Any]) -> "ModelDeployment":
        return cls.model_validate(obj)
