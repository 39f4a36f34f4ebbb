"""Settings from the environment (prefix ``LOCKGATE_``, plus MLflow's own variables). Built
by the CLI or the app factory, never at import time, so tests and embedders can pass their own."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lockgate.gateway.serving.serving_options import OPTION_FIELDS, ServingOptions
from lockgate.loader.store_config import DEFAULT_STORE_ROOT

DEFAULT_HOME = ".lockgate"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCKGATE_", extra="ignore")

    store: str = DEFAULT_STORE_ROOT
    """Store root: a directory, ``s3://bucket/prefix`` or ``memory://``."""
    s3_endpoint_url: str | None = None
    """S3 endpoint for non-AWS object stores (SeaweedFS, MinIO)."""
    cache_dir: str = f"{DEFAULT_HOME}/cache"
    """Where materialized model versions live."""
    cache_max_bytes: int | None = None
    """Bound on the cache; least-recently-used unpinned versions are evicted past it."""
    index_cache_dir: str = f"{DEFAULT_HOME}/store-index"
    """Where writers keep their verified local copy of the store's dedup table (so a push reads
    only the pack indexes written since the last one); unwritable: kept in memory only."""
    tracking_uri: str = Field(
        default=f"sqlite:///{DEFAULT_HOME}/mlflow.db",
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "LOCKGATE_TRACKING_URI"),
    )
    """The MLflow registry to resolve models:/ URIs against (embedded sqlite by default)."""
    registry_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_REGISTRY_URI", "LOCKGATE_REGISTRY_URI")
    )

    config: str | None = None
    """A YAML endpoints file, read when ``lockgate serve`` gets no --config (containers, Helm)."""
    host: str = "127.0.0.1"
    port: int = 8080
    server: Literal["uvicorn", "granian"] = "uvicorn"
    """The HTTP server: uvicorn with httptools and uvloop (the default, measured to cost the least
    CPU per request on lockgate's app), or granian (Rust, hyper; ``lockgate[granian]``)."""
    admin_token: str | None = None
    """Bearer token for /admin routes. Unset: admin routes answer loopback clients only."""
    api_tokens: str | None = None
    """Comma-separated bearer tokens that /invocations and /endpoints/* require (the admin token
    works too). Unset: prediction routes are open, as in MLflow's server. Health, readiness and
    metrics are always open."""
    mlflow_webhook_secret: str | None = None
    """The secret MLflow's registry webhook was created with: ``POST /hooks/mlflow`` believes only
    deliveries it signed. Unset: the route answers 404 and follow relies on polling alone."""
    mlflow_webhook_max_age: float = Field(default=300.0, gt=0)
    """Seconds a webhook delivery's timestamp may be from this clock before it is refused as stale."""
    allow_model_code_execution: bool | None = None
    """False: safe load. A version whose flavors would run the model's own code (a pickled
    sklearn estimator, a custom PythonModel, a pyfunc shipping code) is refused, naming this
    setting; skops and ONNX versions load. Unset: MLflow's ``MLFLOW_ALLOW_MODEL_CODE_EXECUTION``
    decides, and when that is unset too, code may run (MLflow's default)."""
    mlflow_allow_model_code_execution: bool | None = Field(
        default=None, validation_alias="MLFLOW_ALLOW_MODEL_CODE_EXECUTION"
    )
    """MLflow 3.18's variable of the same meaning, read when lockgate's own is unset."""
    trusted_signers: str = ""
    """Comma-separated PEM files: the public keys and certificate roots whose model signatures
    lockgate trusts (``lockgate store sign``). Set, and every version's signature is verified and
    its signer shown; refused only under ``require_signature``."""
    require_signature: bool = False
    """Serve only versions signed by a trusted signer: an unsigned version, one signed by another
    key, or one whose files no longer match its signature never takes traffic."""
    max_extra_columns: int = Field(default=1024, ge=0)
    """Columns a request may carry beyond the model signature's (for a model without a column
    signature: in all). Wider bodies get a 400 before pandas builds a frame."""
    grpc_port: int | None = Field(default=None, ge=1, le=65535)
    """Port of the Open Inference Protocol's gRPC service (on ``host``); unset: no gRPC."""
    follow_interval: float = 10.0
    """Seconds between re-resolutions of moving references (stage, alias, latest)."""
    warm_start: bool = True
    """At start, serve each configured endpoint's last resolved version from its local pin (complete
    and verified in the cache) before the registry answers; the registry is asked at once in the
    background, and a move swaps as usual. False: every start waits for the registry."""
    max_body_bytes: int = 16 * 1024 * 1024
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    """Bound on a request's head (request line and headers): past it the gateway answers 431 at
    once and closes the connection, having buffered at most the bound plus one read."""
    request_timeout: float = 60.0
    """Seconds before a prediction answers 504 (MLflow's scoring server default)."""
    shadow_queue_size: int = Field(default=1000, ge=1)
    """Copies of primary requests that may wait for an endpoint's shadow; past it, copies are
    dropped and counted (``lockgate_shadow_dropped_total``), and clients never wait."""
    drain_timeout: float = 30.0
    """Seconds a swapped-out version may take to finish its in-flight requests."""
    skew_window_seconds: float = 3600.0
    """Length of the serving-skew window."""
    skew_sub_windows: int = 12
    """Sub-windows in the skew ring (the window slides by window/sub_windows)."""
    onnx: bool = True
    """Serve sklearn models through ONNX (skl2onnx + onnxruntime) when the equivalence check passes."""
    batching: bool | None = None
    """Merge concurrent requests into one predict call. Unset: on for row-wise models (sklearn, ONNX)."""
    max_batch_rows: int = 256
    """Upper bound on the rows of one merged predict call."""
    max_batch_wait_ms: float = 2.0
    """Longest a batch waits for requests already in flight; a lone client never waits."""

    onnx_spinning: bool = False
    """Let onnxruntime's intra-op threads spin: faster large batches, slower small requests."""
    live_score_rows: int = Field(default=1000, ge=10, le=1_000_000)
    """Labelled rows the live score (lockgate_live_score) is taken over, per version and role."""
    feedback_horizon_rows: int = Field(default=200_000, ge=1000, le=10_000_000)
    """Logged answers per endpoint kept in memory for joining feedback labels."""
    target_column: str | None = None
    """The label column of the dataset the baseline score is taken on (unset: the one non-input column)."""
    inference_log_sample: float = 0.0
    """Share of scored rows written to the inference log (0 to 1; 0: off)."""
    inference_log_window: float = 60.0
    """Seconds of logged rows per inference-log commit."""
    precision: Literal["exact", "float32", "auto"] = "exact"
    """"exact": the fast path only where it is bit-identical to the native model; "auto" also
    allows float32 graphs within 1e-5 for tree regressors (which have no float64 kernel)."""

    def api_token_list(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in (self.api_tokens or "").split(",") if t.strip())

    def serving_options(self) -> ServingOptions:
        """The defaults for endpoints that do not set their own."""
        return ServingOptions(**{name: getattr(self, name) for name in OPTION_FIELDS})
