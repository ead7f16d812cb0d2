"""Production feedback for the flywheel: evaluation with labels, the prediction log and outcomes, live
metrics, drift, and monitors and schedules that start sweeps."""
