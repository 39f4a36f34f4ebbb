"""The control plane: deploys, swaps, follow, roles, the preparer, the ledger, deploy events."""
