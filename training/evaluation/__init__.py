"""The whole system as a listener takes it: control over the features, pathologies, listening set."""
