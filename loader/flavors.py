"""Loading a materialized model directory with the right flavor.

Preference: ``sklearn`` (the native estimator: fastest, and what the ONNX fast path will
convert), then ``onnx`` (an onnxruntime session directly), then ``python_function`` (any
custom PythonModel). Anything else is refused with the flavors that are present.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loader.errors import ModelLoadError, UnsupportedFlavorError
from loader.model_metadata import ModelMetadata, parse_mlmodel

SUPPORTED = ("sklearn", "onnx", "python_function")


@dataclass
class LoadedModel:
    """A model ready to predict. ``predict`` takes what the flavor's model takes (a DataFrame
    for sklearn and pyfunc, a feature array or DataFrame for onnx)."""

    flavor: str
    native: Any
    predict: Callable[[Any], Any]
    metadata: ModelMetadata
    directory: Path
    input_example: Any = None


def read_metadata(directory: Path) -> ModelMetadata:
    path = directory / "MLmodel"
    if not path.is_file():
        raise ModelLoadError(f"{directory} has no MLmodel file: not an MLflow model")
    return parse_mlmodel(path.read_bytes(), str(path))


def load_model(directory: Path, prefer_pyfunc: bool = False) -> LoadedModel:
    """Load with the native flavor, or (``prefer_pyfunc``) through MLflow's pyfunc wrapper,
    which brings MLflow's own signature enforcement: what the scoring protocol needs."""
    metadata = read_metadata(directory)
    flavors = metadata.flavors
    try:
        if prefer_pyfunc and "python_function" in flavors:
            return _load_pyfunc(directory, metadata)
        if "sklearn" in flavors:
            return _load_sklearn(directory, metadata)
        if "onnx" in flavors:
            return _load_onnx(directory, metadata)
        if "python_function" in flavors:
            return _load_pyfunc(directory, metadata)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load the model in {directory}: {type(exc).__name__}: {exc}") from exc
    raise UnsupportedFlavorError(
        f"cannot serve this model: its flavors are {', '.join(metadata.flavor_names) or 'none'}; "
        f"lockgate serves {', '.join(SUPPORTED)}"
    )


def _load_sklearn(directory: Path, metadata: ModelMetadata) -> LoadedModel:
    import mlflow.sklearn

    estimator = mlflow.sklearn.load_model(str(directory))
    return LoadedModel("sklearn", estimator, estimator.predict, metadata, directory)


def _load_pyfunc(directory: Path, metadata: ModelMetadata) -> LoadedModel:
    import mlflow.pyfunc

    # The dependency check (~0.7 s of scanning installed packages) runs after ready instead:
    # see loader/dependency_check.py.
    model = mlflow.pyfunc.load_model(str(directory), suppress_warnings=True)
    return LoadedModel("python_function", model, model.predict, metadata, directory)


def _load_onnx(directory: Path, metadata: ModelMetadata) -> LoadedModel:
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

    return LoadedModel("onnx", session, predict, metadata, directory)


def load_input_example(directory: Path, metadata: ModelMetadata) -> Any:
    """The saved input example as the model expects it, or None if there is none."""
    if not metadata.input_example_file:
        return None
    from mlflow.models import Model

    try:
        return Model.load(str(directory / "MLmodel")).load_input_example(str(directory))
    except Exception as exc:
        raise ModelLoadError(f"cannot read the input example of {directory}: {exc}") from exc
