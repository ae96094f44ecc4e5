"""Job kinds of the cluster capability (registered on import; see zhuge.jobs.kinds)."""
