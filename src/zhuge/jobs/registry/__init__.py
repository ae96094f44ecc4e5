"""The model registry: tenant-scoped models, numbered versions with lineage, aliases with
their history, the release gate's decisions and the live record (``zhuge models``).

:mod:`zhuge.jobs.registry.model` says what they mean, :mod:`zhuge.jobs.registry.store` keeps
the rows; :mod:`zhuge.jobs.registry.kinds` holds the
jobs that train a version behind the release gate and score the champion live (imported only
where jobs run: it loads pandas and the forecasters).
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
]
