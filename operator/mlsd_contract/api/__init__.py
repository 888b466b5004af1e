"""The ModelDeployment API: typed models (the schema's single source), rules and the CRD."""

from ._crd import PRINTER_COLUMNS, crd, openapi_schema
from ._rules import ApiModel, Rule, RuleViolation
from ._types import (
    API_VERSION, GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION,
    CACHEABLE, Accelerator, Analysis, DeadlineAction, AnalysisResult, Autoscaling, BatchPrediction, BatchStatus, Batching,
    Canary, CanaryStatus, CaseStudy, DriftMonitoring, DriftStatus, EnvVar, FeatureDrift, PredictionCache,
    Retraining, RetrainingJob, RetrainingStatus, Webhook,
    Condition, ConditionStatus, GatewayRef, GpuSpec, HistoryEntry, KServeDeploymentMode, KServeOptions,
    ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus, ModelRef, ObjectMeta, Outcome, Phase,
    Placement, Precision, Resources, Runtime, ScaleMetric, Shadow, ShadowStatus, Toleration, TrackStatus,
    parse_duration,
)
from ._validate import ValidationProblem, validate_manifest

__all__ = [
    "API_VERSION", "GROUP", "KIND", "PLURAL", "SHORT_NAMES", "SINGULAR", "VERSION", "PRINTER_COLUMNS",
    "Accelerator", "Analysis", "AnalysisResult", "ApiModel", "Autoscaling", "Batching", "Canary",
    "CanaryStatus", "CaseStudy", "Condition", "DeadlineAction", "ConditionStatus", "GatewayRef", "GpuSpec", "HistoryEntry",
    "KServeDeploymentMode", "KServeOptions", "ModelDeployment", "ModelDeploymentSpec",
    "ModelDeploymentStatus", "ModelRef", "ObjectMeta", "Outcome", "Phase", "Placement", "Precision",
    "Resources", "Rule", "RuleViolation", "Runtime", "ScaleMetric", "Shadow", "ShadowStatus", "Toleration",
    "TrackStatus", "ValidationProblem", "CACHEABLE", "BatchPrediction", "BatchStatus", "DriftMonitoring",
    "DriftStatus", "EnvVar", "FeatureDrift", "PredictionCache", "Retraining", "RetrainingJob", "RetrainingStatus",
    "Webhook", "crd", "openapi_schema", "parse_duration", "validate_manifest",
]
