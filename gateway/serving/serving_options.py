"""Per-endpoint serving options: the one definition of their names, types, defaults, bounds and
help text.

Everything else is derived from ``ServingOptions`` or checked against it:

- the deploy API body (``OptionsPatch``, a pydantic model generated from the fields below) and
  the config file (validated by the same model, so both give the same errors);
- the gateway settings (``LOCKGATE_*``), the CLI flags, the Helm values and the docs, which
  ``tests/test_serving_options.py`` holds to this list, default for default.

Kept free of heavy imports: settings and the CLI's ``--help`` load it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

# "auto" is the older name of "float32", kept so existing configs keep their meaning.
Precision = Literal["exact", "float32", "auto"]
PRECISIONS: tuple[str, ...] = ("exact", "float32", "auto")


def _about(help_text: str, **bounds: float) -> dict[str, Any]:
    """A field's metadata: its help text and its bounds (pydantic's ge/le)."""
    return {"help": help_text, "bounds": bounds}


@dataclass(frozen=True)
class ServingOptions:
    """Per-endpoint serving options (CLI flags, the config file, the deploy API, settings)."""

    onnx: bool = field(
        default=True, metadata=_about("Serve sklearn models through ONNX when the equivalence check passes.")
    )
    batching: bool | None = field(
        default=None,
        metadata=_about(
            "Merge concurrent requests into one predict call; unset: on for row-wise paths (sklearn, ONNX)."
        ),
    )
    max_batch_rows: int = field(
        default=256, metadata=_about("Upper bound on the rows of one merged predict call.", ge=1, le=1_000_000)
    )
    max_batch_wait_ms: float = field(
        default=2.0,
        metadata=_about(
            "Longest a batch waits for requests already in flight; a lone client never waits.", ge=0, le=1000
        ),
    )
    onnx_spinning: bool = field(
        default=False,
        metadata=_about("Let onnxruntime's intra-op threads spin: faster large batches, slower small requests."),
    )
    precision: Precision = field(
        default="exact",
        metadata=_about(
            "exact: only answers bit-identical to the native model (tree regressors on lockgate's tree "
            "engine); float32 (or its older name auto) also allows an sklearn tree regressor's float32 "
            "ONNX graph, within 1e-5 of the native model."
        ),
    )

    inference_log_sample: float = field(
        default=0.0,
        metadata=_about(
            "Share of scored rows written to the inference log (0 to 1; 0: off), committed to the store's "
            "'inference' repository, branch named after the endpoint.",
            ge=0,
            le=1,
        ),
    )
    inference_log_window: float = field(
        default=60.0,
        metadata=_about("Seconds of logged rows per inference-log commit.", ge=1, le=86400),
    )

    target_column: str | None = field(
        default=None,
        metadata=_about(
            "The label column of the evaluation (or training) dataset the baseline score is taken on; "
            "unset: the one column that is not a model input."
        ),
    )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_overrides(self, overrides: dict[str, Any]) -> ServingOptions:
        """These options with the set (not None) values of a validated patch."""
        changes = {k: v for k, v in overrides.items() if k in OPTION_FIELDS and v is not None}
        return dataclasses.replace(self, **changes) if changes else self


# The one list of option names.
OPTION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ServingOptions))
OPTION_HELP: dict[str, str] = {f.name: f.metadata["help"] for f in fields(ServingOptions)}
OPTION_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ServingOptions)}


def _patch_fields() -> dict[str, Any]:
    """Each option as an optional pydantic field: None means "keep the default"."""
    hints = get_type_hints(ServingOptions)
    out: dict[str, Any] = {}
    for option in fields(ServingOptions):
        help_text, bounds = option.metadata["help"], option.metadata["bounds"]
        out[option.name] = (hints[option.name] | None, Field(default=None, description=help_text, **bounds))
    return out


# strict: the config file's YAML `"yes"` or `1` for a boolean is an error, as it is in JSON.
OptionsPatch: type[BaseModel] = create_model(
    "OptionsPatch",
    __config__=ConfigDict(extra="forbid", strict=True),
    **_patch_fields(),
)
