"""The data plane: routing, serving, deployments, batching, serving paths, request decoders."""
