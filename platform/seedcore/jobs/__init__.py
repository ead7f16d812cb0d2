"""The job queue: its store, the kinds of job, the runner that claims and runs them."""
