"""Safe load, decided from the settings: lockgate's own variable, else MLflow's.

``LOCKGATE_ALLOW_MODEL_CODE_EXECUTION`` wins when set; otherwise MLflow 3.18's
``MLFLOW_ALLOW_MODEL_CODE_EXECUTION`` decides, so a platform that set MLflow's variable for its
training and serving images gets the same rule in lockgate without learning a second name.
When the answer is "no", MLflow's variable is set for this process and its children (the ONNX
conversion) too: on MLflow 3.18 MLflow's own loaders then refuse as well, a second lock behind
lockgate's check (``loader/load_policy.py``).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from lockgate.gateway.settings import Settings
from lockgate.loader.load_policy import ALLOW_CODE, LoadPolicy

MLFLOW_VARIABLE = "MLFLOW_ALLOW_MODEL_CODE_EXECUTION"
LOCKGATE_VARIABLE = "LOCKGATE_ALLOW_MODEL_CODE_EXECUTION"


def load_policy(settings: Settings, environ: MutableMapping[str, str] = os.environ) -> LoadPolicy:
    if settings.allow_model_code_execution is not None:
        policy = LoadPolicy(settings.allow_model_code_execution, LOCKGATE_VARIABLE)
    elif settings.mlflow_allow_model_code_execution is not None:
        policy = LoadPolicy(settings.mlflow_allow_model_code_execution, MLFLOW_VARIABLE)
    else:
        policy = ALLOW_CODE
    if not policy.allow_code:
        environ[MLFLOW_VARIABLE] = "false"
    return policy
