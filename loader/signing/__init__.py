"""OpenSSF model signatures (the ``model-signing`` package, Sigstore bundles over a manifest of a
model's files) attached to weights commits, and the policy that serves only what a trusted key
signed."""
