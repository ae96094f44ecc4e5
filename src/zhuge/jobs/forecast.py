"""Job kinds of the forecast capability (registered on import; see zhuge.jobs.kinds)."""
