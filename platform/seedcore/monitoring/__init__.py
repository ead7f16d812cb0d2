"""Production feedback for the flywheel: evaluation with labels, the prediction log and outcomes, live
metrics, drift, and monitors that start sweeps. Submodules load lazily (predict imports only predlog)."""

__all__ = ["start_flywheel_loops"]


def start_flywheel_loops(app, interval_s: float | None = None):
    """Check schedules and monitors every `monitor_interval_s` in the background; returns `stop()`."""
    from seedcore.monitoring.loops import start_flywheel_loops as start

    return start(app, interval_s)
