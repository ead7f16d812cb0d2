"""The model registry and promotion: register, gate, promote, blessed files, model cards, plots."""
