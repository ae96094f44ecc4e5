"""What a job asks for against what the workers offer: pure functions.

A resource is a name and an amount per worker (``CPU=1``, ``GPU=1``, ``memory_gb=16``,
anything custom). The *census* is, per name, the most any one recorded worker offers; it is
what submit checks against, so a job asking for something no worker offers is refused at once
with what the cluster does offer, instead of waiting for ever. With no worker recorded yet
(a server that just started, workers still joining), nothing is refused for this reason: jobs
pile up safely. Whether a job fits a worker *now* is admission's question
(``zhuge.jobs.admission``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from zhuge.jobs.model import Worker

Resources = Mapping[str, float]


def census(workers: Iterable[Worker]) -> dict[str, float]:
    """Per resource name, the largest amount one worker offers."""
    offered: dict[str, float] = {}
    for worker in workers:
        for name, amount in worker.resources.items():
            offered[name] = max(offered.get(name, 0.0), float(amount))
    return offered


def describe(resources: Resources) -> str:
    """``CPU=1, GPU=0.5``: resources as a user writes them."""
    return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items())) or "nothing"


def unmet(asked: Resources, offered: Mapping[str, float]) -> list[str]:
    """What of ``asked`` no single worker of ``offered`` has, in words; empty if it fits."""
    problems = []
    for name, amount in sorted(asked.items()):
        most = offered.get(name)
        if most is None:
            problems.append(f"no worker offers {name}")
        elif amount > most:
            problems.append(f"{name}={amount:g} is more than any worker offers ({name}={most:g})")
    return problems
