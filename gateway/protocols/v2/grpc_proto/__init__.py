"""The Open Inference Protocol's gRPC API: the specification's proto, compiled at import time."""
