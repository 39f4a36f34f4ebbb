"""Safe load: which of a version's flavors would run code from the model's own files.

MLflow 3.18 added ``MLFLOW_ALLOW_MODEL_CODE_EXECUTION=false``: MLflow then refuses pickled and
pyfunc models, while skops and ONNX still load. lockgate applies the same rule itself, before
MLflow is asked to load anything, so the rule holds on MLflow 3.17 too and the refusal names the
setting and each flavor's reason instead of failing somewhere inside MLflow.

Unpickling runs whatever the pickle says, so a pickled or cloudpickled scikit-learn model, a
custom ``PythonModel``, a model-from-code, or a pyfunc that ships its own ``code`` all run code.
A skops file is read by an allow-list of types, and an ONNX graph is data for onnxruntime. A
skops file may name extra types to trust (``skops_trusted_types`` in its ``MLmodel``; a tree
model needs ``sklearn.tree._tree.Tree``). That list comes from the model's own files, the very
thing the setting declines to trust, so under safe load only types from scikit-learn, NumPy and
SciPy are accepted from it; any other (``builtins.eval``, a package of the author's) refuses it.

The gateway decides the policy (``gateway/model_code_policy.py``, from the environment); the
loader only applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lockgate.loader.model_metadata import ModelMetadata

# MLflow's pyfunc loader modules that load data, not code, when their own flavor does: the
# flavor each one loads (None: always data).
_SAFE_PYFUNC_LOADERS: dict[str, str | None] = {
    "mlflow.onnx": None,
    "mlflow.sklearn": "sklearn",
    "mlflow.xgboost": "xgboost",
    "mlflow.lightgbm": "lightgbm",
}
# Where a skops file's own list of trusted types may point under safe load.
_SAFE_TYPE_ROOTS = ("sklearn.", "numpy.", "scipy.")


@dataclass(frozen=True)
class LoadPolicy:
    """Whether a model's own code may run at load time, and which setting decided it."""

    allow_code: bool = True
    set_by: str = "default"  # the variable that decided it, or "default" (allowed)

    def as_dict(self) -> dict[str, Any]:
        return {"allow_model_code_execution": self.allow_code, "set_by": self.set_by}


ALLOW_CODE = LoadPolicy()


def _sklearn_runs_code(conf: dict[str, Any]) -> str | None:
    fmt = str(conf.get("serialization_format") or "pickle")
    if fmt != "skops":
        return f"its estimator is unpickled ({fmt}, {conf.get('pickled_model') or 'model.pkl'})"
    foreign = [t for t in conf.get("skops_trusted_types") or [] if not str(t).startswith(_SAFE_TYPE_ROOTS)]
    if foreign:
        return f"its MLmodel tells skops to trust {', '.join(map(str, foreign))}"
    return None


def _tree_library_runs_code(flavor: str, conf: dict[str, Any]) -> str | None:
    """MLflow's xgboost loader imports the class its ``MLmodel`` names and reads a UBJSON or JSON
    file; its lightgbm loader reads a native ``Booster`` from text, and an sklearn wrapper as
    the sklearn flavor does (a pickle, unless skops)."""
    model_class = str(conf.get("model_class") or "")
    if flavor == "xgboost":
        if model_class and not model_class.startswith("xgboost."):
            return f"its MLmodel names {model_class} as the class to import"
        return None
    if model_class in ("", "lightgbm.basic.Booster"):
        return None
    return _sklearn_runs_code({"serialization_format": conf.get("serialization_format") or "cloudpickle", **conf})


def code_run_by_flavor(metadata: ModelMetadata) -> dict[str, str]:
    """Flavor name -> why loading it would run code from the model's files; safe flavors are absent."""
    flavors = metadata.flavors
    reasons: dict[str, str] = {}
    sklearn = flavors.get("sklearn")
    if isinstance(sklearn, dict):
        reason = _sklearn_runs_code(sklearn)
        if reason:
            reasons["sklearn"] = reason
    for library in ("xgboost", "lightgbm"):
        conf = flavors.get(library)
        if isinstance(conf, dict) and (reason := _tree_library_runs_code(library, conf)):
            reasons[library] = reason
    pyfunc = flavors.get("python_function")
    if isinstance(pyfunc, dict):
        loader_module = str(pyfunc.get("loader_module") or "")
        if pyfunc.get("code"):
            reasons["python_function"] = f"it ships Python code of its own ({pyfunc['code']})"
        elif loader_module not in _SAFE_PYFUNC_LOADERS:
            what = pyfunc.get("python_model") or pyfunc.get("model_code_path") or loader_module
            reasons["python_function"] = f"it runs Python code ({loader_module}: {what})"
        elif (flavor := _SAFE_PYFUNC_LOADERS[loader_module]) is not None and flavor in reasons:
            reasons["python_function"] = f"MLflow's {flavor} loader on the same file: {reasons[flavor]}"
    return reasons
