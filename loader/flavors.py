"""Loading a materialized model directory with the right flavor.

Preference: ``sklearn`` (the native estimator: fastest, and what the ONNX fast path will
convert), then ``onnx`` (an onnxruntime session directly), then ``python_function`` (any
custom PythonModel). Anything else is refused with the flavors that are present.

Under safe load (``LoadPolicy(allow_code=False)``, see ``loader/load_policy.py``) a flavor whose
load would run the model's own code is passed over: a version with a pickled sklearn estimator
and an ONNX flavor serves the ONNX graph; one with nothing else is refused, naming the setting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.loader.errors import (
    MissingFlavorLibraryError,
    ModelCodeRefusedError,
    ModelLoadError,
    UnsupportedFlavorError,
)
from lockgate.loader.load_policy import ALLOW_CODE, LoadPolicy, code_run_by_flavor
from lockgate.loader.model_metadata import ModelMetadata, parse_mlmodel

SUPPORTED = ("sklearn", "onnx", "python_function")


NativeLoader = Callable[[], tuple[Any, Callable[..., Any]]]


class LoadedModel:
    """A model ready to predict. ``predict`` takes what the flavor's model takes (a DataFrame
    for sklearn and pyfunc, a feature array or DataFrame for onnx).

    The native model may be *deferred* (``load_model(..., defer_native=True)``): a warm restart
    that serves a version's checked ONNX graph need not import sklearn and unpickle the
    estimator before it is ready (about 0.5 s of a 1.8 s restart of the 100-tree forest). The
    first use of ``native`` or ``predict`` then loads it, once, in the caller's thread; the
    gateway starts that load itself as soon as it serves (``gateway/control/preparer.py``)."""

    def __init__(
        self,
        flavor: str,
        metadata: ModelMetadata,
        directory: Path,
        load: NativeLoader,
        *,
        defer: bool = False,
        mlflow_model: Any = None,
    ) -> None:
        self.flavor = flavor
        self.metadata = metadata
        self.directory = directory
        self.input_example: Any = None
        self.native_seconds = 0.0  # how long the native load took, once it ran
        self.policy = ALLOW_CODE
        self.passed_over: dict[str, str] = {}  # flavor -> why safe load did not load it
        self._load = load
        self._mlflow_model = mlflow_model
        self._lock = threading.Lock()
        self._native: Any = None
        self._predict: Callable[..., Any] | None = None
        self._failure: ModelLoadError | None = None
        if not defer:
            self.load_native(warm_up=False)

    @property
    def native_loaded(self) -> bool:
        return self._predict is not None

    @property
    def native(self) -> Any:
        self.load_native()
        return self._native

    @property
    def predict(self) -> Callable[..., Any]:
        self.load_native()
        assert self._predict is not None
        return self._predict

    @property
    def mlflow_metadata(self) -> Any:
        """MLflow's ``Model`` (the parsed ``MLmodel``) of a pyfunc load, what its ``metadata``
        is, without loading the native model; None for other flavors, as before."""
        if self._mlflow_model is None and self.native_loaded:
            return getattr(self._native, "metadata", None)
        return self._mlflow_model

    def load_native(self, *, warm_up: bool = True) -> None:
        """Load the native model if it is not loaded yet, and (``warm_up``) predict once on the
        input example. Thread-safe; a failure is raised to every caller, every time."""
        if self._predict is not None:
            return
        with self._lock:
            if self._predict is not None:
                return
            if self._failure is not None:
                raise self._failure
            started = time.perf_counter()
            try:
                native, predict = self._load()
            except ModelLoadError as exc:
                self._failure = exc
                raise
            except Exception as exc:
                self._failure = ModelLoadError(
                    f"cannot load the model in {self.directory}: {type(exc).__name__}: {exc}"
                )
                raise self._failure from exc
            if warm_up and self.input_example is not None:
                try:
                    predict(self.input_example)
                except Exception as exc:
                    self._failure = ModelLoadError(
                        f"the model in {self.directory} fails to predict on its own input example: "
                        f"{type(exc).__name__}: {exc}"
                    )
                    raise self._failure from exc
            self._native = native
            self.native_seconds = time.perf_counter() - started
            self._predict = predict  # last: ``native_loaded`` means all of it is there


def read_metadata(directory: Path) -> ModelMetadata:
    path = directory / "MLmodel"
    if not path.is_file():
        raise ModelLoadError(f"{directory} has no MLmodel file: not an MLflow model")
    return parse_mlmodel(path.read_bytes(), str(path))


def load_model(
    directory: Path,
    prefer_pyfunc: bool = False,
    *,
    defer_native: bool = False,
    metadata: ModelMetadata | None = None,
    policy: LoadPolicy = ALLOW_CODE,
) -> LoadedModel:
    """Load with the native flavor, or (``prefer_pyfunc``) through MLflow's pyfunc wrapper,
    which brings MLflow's own signature enforcement: what the scoring protocol needs. With
    ``defer_native`` the model is only described (flavor, metadata) and loads on first use.
    ``metadata``: the ``MLmodel`` the caller read already (else it is read here). ``policy``:
    whether a flavor that runs the model's own code may be loaded."""
    if metadata is None:
        metadata = read_metadata(directory)
    runs_code = {} if policy.allow_code else code_run_by_flavor(metadata)
    if runs_code:
        # What the model is, as far as anything above may use it: a flavor passed over is gone,
        # so no later step (the ONNX fast path's conversion, a raw-model probe) reaches for it.
        allowed = {name: conf for name, conf in metadata.flavors.items() if name not in runs_code}
        metadata = replace(metadata, flavors=allowed)
    _require_flavor_library(metadata)
    try:
        model = _load_first(directory, metadata, prefer_pyfunc, defer_native)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load the model in {directory}: {type(exc).__name__}: {exc}") from exc
    if model is None and runs_code and any(name in SUPPORTED for name in runs_code):
        reasons = "; ".join(f"{name}: {why}" for name, why in sorted(runs_code.items()))
        raise ModelCodeRefusedError(
            f"not loaded: {policy.set_by}=false forbids loading a model that runs its own code, and every "
            f"flavor this version can be served with would ({reasons}). Log it with "
            f"serialization_format='skops' or as ONNX, or allow model code execution"
        )
    if model is None:
        raise UnsupportedFlavorError(
            f"cannot serve this model: its flavors are {', '.join(metadata.flavor_names) or 'none'}; "
            f"lockgate serves {', '.join(SUPPORTED)}"
        )
    model.policy = policy
    model.passed_over = runs_code
    return model


# MLflow's pyfunc loader module -> the library it imports, and the extra that installs it.
_FLAVOR_LIBRARIES = {"mlflow.xgboost": "xgboost", "mlflow.lightgbm": "lightgbm"}


def _require_flavor_library(metadata: ModelMetadata) -> None:
    """One clear error, before MLflow fails somewhere inside its loader with a bare import error."""
    import importlib.util

    pyfunc = metadata.flavors.get("python_function")
    loader_module = str(pyfunc.get("loader_module") or "") if isinstance(pyfunc, dict) else ""
    library = _FLAVOR_LIBRARIES.get(loader_module)
    if library is None or "sklearn" in metadata.flavors or "onnx" in metadata.flavors:
        return
    if importlib.util.find_spec(library) is None:
        raise MissingFlavorLibraryError(
            f"this version is a {library} model (MLflow's {library} flavor) and {library} is not installed "
            f"where lockgate runs: pip install 'lockgate[{library}]'"
        )


def _load_first(
    directory: Path, metadata: ModelMetadata, prefer_pyfunc: bool, defer_native: bool
) -> LoadedModel | None:
    """The first flavor of the preference order among the metadata's flavors, or None."""
    flavors = metadata.flavors
    if prefer_pyfunc and "python_function" in flavors:
        return _pyfunc(directory, metadata, defer_native)
    if prefer_pyfunc and "onnx" in flavors:
        # Only under safe load: the version's python_function was passed over (MLflow's sklearn
        # loader on a pickle), so its ONNX graph is served as MLflow serves an ONNX model.
        mlflow_model = metadata.mlflow_model() if defer_native else None
        load = partial(_load_onnx_pyfunc, directory, metadata)
        return LoadedModel("onnx", metadata, directory, load, defer=defer_native, mlflow_model=mlflow_model)
    if "sklearn" in flavors:
        return LoadedModel("sklearn", metadata, directory, partial(_load_sklearn, directory), defer=defer_native)
    if "onnx" in flavors:
        load_onnx = partial(_load_onnx, directory, metadata)
        return LoadedModel("onnx", metadata, directory, load_onnx, defer=defer_native)
    if "python_function" in flavors:
        return _pyfunc(directory, metadata, defer_native)
    return None


def _pyfunc(directory: Path, metadata: ModelMetadata, defer: bool) -> LoadedModel:
    mlflow_model = None
    if defer:  # what the pyfunc's ``metadata`` will be, so the schema is known before it loads
        mlflow_model = metadata.mlflow_model()
    return LoadedModel(
        "python_function", metadata, directory, partial(_load_pyfunc, directory), defer=defer, mlflow_model=mlflow_model
    )


def _load_sklearn(directory: Path) -> tuple[Any, Callable[..., Any]]:
    import mlflow.sklearn

    estimator = mlflow.sklearn.load_model(str(directory))
    return estimator, estimator.predict


def _load_pyfunc(directory: Path) -> tuple[Any, Callable[..., Any]]:
    import mlflow.pyfunc

    # The dependency check (~0.7 s of scanning installed packages) runs after ready instead:
    # see loader/dependency_check.py.
    model = mlflow.pyfunc.load_model(str(directory), suppress_warnings=True)
    return model, model.predict


def _load_onnx_pyfunc(directory: Path, metadata: ModelMetadata) -> tuple[Any, Callable[..., Any]]:
    import mlflow.onnx
    import mlflow.pyfunc

    # ``_load_pyfunc`` is the loader-module hook MLflow's pyfunc itself calls for the onnx flavor.
    data = directory / str(metadata.flavors["onnx"].get("data", "model.onnx"))
    model = mlflow.pyfunc.PyFuncModel(
        model_meta=metadata.mlflow_model(), model_impl=mlflow.onnx._load_pyfunc(str(data))
    )
    return model, model.predict


def _load_onnx(directory: Path, metadata: ModelMetadata) -> tuple[Any, Callable[..., Any]]:
    import onnxruntime

    model_file = directory / str(metadata.flavors["onnx"].get("data", "model.onnx"))
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()

    def predict(data: Any) -> Any:
        if len(inputs) == 1:
            array = np.asarray(data.to_numpy() if hasattr(data, "to_numpy") else data)
            if "float" in inputs[0].type and array.dtype != np.float32:
                array = array.astype(np.float32)
            feed = {inputs[0].name: array}
        else:
            feed = {i.name: np.asarray(data[i.name]) for i in inputs}
        outputs = session.run(None, feed)
        return outputs[0]

    return session, predict


def load_input_example(directory: Path, metadata: ModelMetadata) -> Any:
    """The saved input example as the model expects it, or None if there is none."""
    if not metadata.input_example_file:
        return None
    try:
        return metadata.mlflow_model().load_input_example(str(directory))
    except Exception as exc:
        raise ModelLoadError(f"cannot read the input example of {directory}: {exc}") from exc
