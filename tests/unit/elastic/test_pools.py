"""pools.yaml: what it accepts, what it refuses (naming the field), and its defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhuge.errors import InvalidRequest
from zhuge.jobs.elastic.pools import DemandPolicy, FixedPolicy, PoolsConfig, RulePolicy
from zhuge.jobs.simulate import fixed_workers, load_pools

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

FULL = """
pools:
  - name: cpu
    resources: {CPU: 4, memory_gb: 16}
    min: 0
    max: 10
    warm: 1
    idle_timeout: 5m
    startup_s: 90
    billing: {granularity: hour, minimum_s: 0}
    price_per_hour: {on_demand: 0.2, spot: 0.06}
    spot: true
    provider: dask-k8s
    policy: {name: rule, threshold: 0.9, waiting_jobs: 3, step: 2}
    cooldown: {up: 1m, down: 10m}
    stabilisation: {up: 30s, down: 15m}
  - {name: gpu, resources: {GPU: 1, CPU: 8, memory_gb: 64}, max: 2, policy: demand}
"""


def test_a_full_file_parses_with_durations_and_shorthands() -> None:
    cpu, gpu = PoolsConfig.parse(FULL).pools
    assert cpu.idle_timeout == 300 and cpu.startup_s == 90
    assert cpu.billing.granularity == "hour" and cpu.billing.minimum_s == 0
    assert cpu.spot == 1.0 and cpu.provider == "dask-k8s"
    assert cpu.policy == RulePolicy(threshold=0.9, waiting_jobs=3, step=2)
    assert (cpu.cooldown.up, cpu.cooldown.down) == (60, 600)
    assert (cpu.stabilisation.up, cpu.stabilisation.down) == (30, 900)
    assert gpu.policy == DemandPolicy() and gpu.min == 0 and gpu.spot == 0.0
    assert gpu.provider == "local" and gpu.billing.granularity == "second"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (
            "pools: [{name: a, resources: {CPU: 1}, policy: {name: rule, treshold: 1}}]",
            "pools.0.policy.treshold",
        ),
        (
            "pools: [{name: a, resources: {CPU: 1}, policy: {name: rule, step: 0}}]",
            "pools.0.policy.step",
        ),
        (
            "pools: [{name: a, resources: {CPU: 1}, policy: psychic}]",
            "pools.0.policy: unknown policy",
        ),
        ("pools: [{name: a, resources: {CPU: 1}, min: 3, max: 2}]", "min (3) is more than max (2)"),
        (
            "pools: [{name: a, resources: {CPU: 1}, warm: 3, max: 2}]",
            "warm (3) is more than max (2)",
        ),
        ("pools: [{name: a, resources: {CPU: 1}, idle_timeout: 5x}]", "pools.0.idle_timeout"),
        (
            "pools: [{name: a, resources: {CPU: 1}, billing: {granularity: minute}}]",
            "pools.0.billing.granularity",
        ),
        ("pools: [{name: a, resources: {CPU: 1}, spot: 0.5}]", "price_per_hour.spot is not"),
        ("pools: [{name: a, resources: {CPU: 1}, spot: 2}]", "pools.0.spot"),
        ("pools: [{name: a, resources: {CPU: 1}, count: 0}]", "pools.0.count"),
        (
            "pools: [{name: a, resources: {CPU: 1}, provider: 'my.module:Cluster'}]",
            "pools.0.provider",
        ),
        ("pools: [{name: a, resources: {}}]", "pools.0.resources"),
        ("pools: [{name: a, resources: {CPU: 1}}, {name: a, resources: {CPU: 2}}]", "a repeated"),
        ("pools: []", "pools"),
        ("- just a list", "must be a mapping"),
        ("pools: [", "not valid YAML"),
    ],
)
def test_bad_files_name_the_field(document: str, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        PoolsConfig.parse(document)
    message = caught.value.message
    assert field in message
    assert "\n" not in message.strip() or "YAML" in message
    assert message.startswith("pools file")


def test_the_fixed_shape_still_declares_the_same_workers() -> None:
    config = PoolsConfig.parse((EXAMPLES / "pools.yaml").read_text())
    workers = fixed_workers(config)
    assert workers == load_pools(EXAMPLES / "pools.yaml")
    assert all(isinstance(p.policy, FixedPolicy) and p.min == p.max for p in config.pools)
    assert fixed_workers(PoolsConfig.parse(FULL)) is None  # pools that scale


def test_the_smallest_pool_that_fits_a_shape() -> None:
    config = PoolsConfig.parse(FULL)
    assert config.for_shape({"CPU": 2}).name == "cpu"
    assert config.for_shape({"CPU": 6}).name == "gpu"  # only the GPU worker has 6 CPU
    assert config.for_shape({"GPU": 0.5}).name == "gpu"
    assert config.for_shape({"GPU": 2}) is None
    assert config.pool("gpu").copies_per_worker({"CPU": 3}) == 2
    assert config.pool("cpu").worker_fraction({"CPU": 1, "memory_gb": 8}) == 0.5
