"""MLflow's scoring protocol (`/invocations`), byte-compatible with `mlflow models serve`."""
