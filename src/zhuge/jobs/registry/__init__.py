"""The model registry: tenant-scoped models, numbered versions with lineage, aliases with
their history, the release gate's decisions and the live record (``zhuge models``).

:mod:`zhuge.jobs.registry.model` says what they mean, :mod:`zhuge.jobs.registry.store` keeps
the rows (and, on each job that used a model, the version it resolved to);
:mod:`zhuge.jobs.registry.use` is what any job does with the registry (the version its
``model_from`` resolved to, registering a clustering model); :mod:`zhuge.jobs.registry.kinds`
and :mod:`zhuge.jobs.registry.live` hold the jobs that train a version behind the release
gate and score the champion live, and :mod:`zhuge.jobs.registry.metrics` the gate's
``decision_regret`` (imported only where jobs run: they load pandas and the forecasters).
"""

from __future__ import annotations

from zhuge.jobs.registry.model import (
    CHALLENGER,
    CHAMPION,
    ModelConfig,
    ModelVersion,
    check_alias,
    check_config,
    check_name,
    parse_ref,
    task_of_kind,
)
from zhuge.jobs.registry.store import Registry

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "ModelConfig",
    "ModelVersion",
    "Registry",
    "check_alias",
    "check_config",
    "check_name",
    "parse_ref",
    "task_of_kind",
]
