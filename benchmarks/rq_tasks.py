"""The peer's job function for benchmarks/queue.py (RQ imports it by dotted path)."""


def noop() -> None:
    return None
