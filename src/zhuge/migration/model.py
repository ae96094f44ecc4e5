"""Pre-copy live-migration model: how long a move takes and how long the guest is paused.

The algorithm modelled is Xen/KVM pre-copy (Clark et al., NSDI 2005; Akoush et al.,
MASCOTS 2010). Memory ``M`` is sent at link rate ``B`` while the guest keeps running and
dirties pages at rate ``D``::

    round 0   sends all of M                      (takes M / B)
    round i   sends the pages dirtied in round i-1: V_i = min(M, D * V_{i-1} / B) = M r^i
    stop      when V_k <= stop_threshold_mb, or after max_rounds pre-copy rounds, or at once
              after round 0 when D >= B (r >= 1: pre-copy cannot converge, the whole memory
              is dirty again and must be sent while the guest is paused)
    pause     the guest, send V_k (stop-and-copy), resume on the destination

    downtime  = V_k / B + resume_overhead_ms
    total     = (V_0 + V_1 + ... + V_k) / B + resume_overhead_ms

with ``r = D / B``. The dirty rate grows with CPU load and with the memory a guest can touch::

    D [MB/s] = base_dirty_mbps + dirty_rate_coeff * (load% / 100) * memory_gb

**Exact versus expected downtime.** The exact stop-and-copy set ``V_k = M r^k`` is a sawtooth
in ``r``: one more round drops it by a factor ``r``, so it jumps anywhere inside
``(r * threshold, threshold]`` as the load changes by a few percent, well inside forecast
error. A planner chasing that sawtooth chases noise. ``expected=True`` (the default, and what
the planner uses) averages over the position of the last round boundary (``log V_k``
uniform over one factor of ``r``), which gives ``E[V_k] = threshold * (1 - r) / ln(1/r)``:
monotone in load, equal to the exact value on average. It is capped by ``r * M`` for guests so
small that one round suffices, and replaced by the exact ``M r^max_rounds`` when the round
limit is reached. ``expected=False`` gives the exact rounds (used to check the model by hand
and to simulate what really happened).

Units are decimal, as links are rated: 1 GB = 1000 MB, 1 Gbit/s = 125 MB/s.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zhuge.errors import InvalidRequest

__all__ = ["MBPS_PER_GBPS", "MB_PER_GB", "MigrationEstimate", "MigrationModel", "simulate_precopy"]

MB_PER_GB = 1000.0  # decimal, as memory sizes are quoted to operators
MBPS_PER_GBPS = 125.0  # 1 Gbit/s = 125 MB/s


@dataclass(frozen=True, kw_only=True)
class MigrationModel:
    """Parameters of the pre-copy model. Defaults and why:

    - ``bandwidth_gbps = 10``: the migration link rate of one move (a 10 GbE migration
      network, or a 25 GbE NIC shared with guest traffic).
    - ``base_dirty_mbps = 5``: an idle Linux guest still dirties a few MB/s (timers, page
      cache writeback, kernel bookkeeping); Clark et al. measure single-digit MB/s idle.
    - ``dirty_rate_coeff = 10``: MB/s dirtied per GB of guest memory at 100 % CPU. A busy
      16 GB guest then dirties 165 MB/s (Clark et al.'s SPECweb/Quake WWS figures are in the
      100-300 MB/s range); a busy 128 GB guest exceeds a 10 Gbit/s link and cannot converge,
      which is the behaviour operators see. Calibrate it from history (``calibrate``).
    - ``stop_threshold_mb = 50`` and ``max_rounds = 30``: Xen's stop conditions (it stops at
      ~50 dirty pages per round in the paper's setting, and after 29 iterations + the final).
    - ``resume_overhead_ms = 30``: device state transfer, ARP announcement and resume on the
      destination, the fixed part of the 60-210 ms downtimes Clark et al. report.
    """

    bandwidth_gbps: float = 10.0  # Gbit/s per migration
    base_dirty_mbps: float = 5.0  # MB/s
    dirty_rate_coeff: float = 10.0  # MB/s per GB of memory at 100 % CPU
    stop_threshold_mb: float = 50.0  # MB
    max_rounds: int = 30  # pre-copy rounds, the first full copy included
    resume_overhead_ms: float = 30.0  # ms

    def __post_init__(self) -> None:
        for name in ("bandwidth_gbps", "stop_threshold_mb"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidRequest(
                    f"MigrationModel.{name} must be a positive number, got {value!r}"
                )
        for name in ("base_dirty_mbps", "dirty_rate_coeff", "resume_overhead_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidRequest(f"MigrationModel.{name} must be >= 0, got {value!r}")
        if int(self.max_rounds) != self.max_rounds or self.max_rounds < 1:
            raise InvalidRequest(
                f"MigrationModel.max_rounds must be an integer >= 1, got {self.max_rounds!r}"
            )

    def evolve(self, **changes: float) -> MigrationModel:
        return dataclasses.replace(self, **changes)

    @property
    def bandwidth_mbps(self) -> float:
        return self.bandwidth_gbps * MBPS_PER_GBPS

    def dirty_rate_mbps(
        self, memory_gb: ArrayLike, load_pct: ArrayLike, coeff: ArrayLike | None = None
    ) -> NDArray[np.float64]:
        """Dirty rate in MB/s; ``coeff`` (per VM, NaN = model default) overrides the default.

        Load is clipped to [0, 100] %: the coefficient is defined at full CPU, and telemetry
        above 100 % is a reporting artefact, not a faster-dirtying guest.
        """
        memory = np.asarray(memory_gb, dtype=np.float64)
        load = np.clip(np.asarray(load_pct, dtype=np.float64), 0.0, 100.0)
        if coeff is None:
            c: NDArray[np.float64] | float = self.dirty_rate_coeff
        else:
            c = np.asarray(coeff, dtype=np.float64)
            c = np.where(np.isnan(c), self.dirty_rate_coeff, c)
        return self.base_dirty_mbps + c * (load / 100.0) * memory

    def predict(
        self,
        memory_gb: ArrayLike,
        load_pct: ArrayLike,
        coeff: ArrayLike | None = None,
        *,
        expected: bool = True,
    ) -> MigrationEstimate:
        """Downtime and duration of migrating each guest at each load (arrays broadcast).

        Vectorised: the planner calls it once on a VMs x windows matrix. Closed form of the
        rounds above, no Python loop; ``simulate_precopy`` is the loop, kept to check it.
        """
        memory_mb = np.asarray(memory_gb, dtype=np.float64) * MB_PER_GB
        bandwidth = self.bandwidth_mbps
        dirty = self.dirty_rate_mbps(memory_gb, load_pct, coeff)
        memory_mb, dirty = np.broadcast_arrays(memory_mb, dirty)
        r = dirty / bandwidth
        threshold = self.stop_threshold_mb
        max_rounds = int(self.max_rounds)

        converging = r < 1.0
        safe_r = np.clip(r, 1e-300, 1.0 - 1e-12)
        log_inv_r = -np.log(safe_r)
        with np.errstate(divide="ignore", invalid="ignore"):
            # rounds needed to bring M r^k under the threshold
            needed = np.log(np.maximum(memory_mb, 1e-300) / threshold) / log_inv_r
        rounds = np.clip(np.ceil(needed - 1e-12), 1, max_rounds)
        rounds = np.where(r <= 0.0, 1.0, rounds)
        capped = needed > max_rounds  # stopped by the round limit, not the threshold
        exact_last = memory_mb * safe_r**rounds
        if expected:
            smooth = np.minimum(safe_r * memory_mb, threshold * (1.0 - safe_r) / log_inv_r)
            last = np.where(capped, exact_last, smooth)
        else:
            last = exact_last
        last = np.where(r <= 0.0, 0.0, last)
        last = np.where(converging, last, memory_mb)
        # V_0 + ... + V_k = (M - r V_k) / (1 - r); for r -> 1 that is M (k + 1)
        one_minus_r = 1.0 - safe_r
        sent = np.where(
            one_minus_r > 1e-9,
            (memory_mb - safe_r * last) / one_minus_r,
            memory_mb * (rounds + 1.0),
        )
        sent = np.where(converging, sent, 2.0 * memory_mb)
        rounds = np.where(converging, rounds, 1.0)
        overhead_s = self.resume_overhead_ms / 1000.0
        return MigrationEstimate(
            dirty_rate_mbps=dirty,
            rounds=rounds.astype(np.int64),
            downtime_ms=last / bandwidth * 1000.0 + self.resume_overhead_ms,
            total_s=sent / bandwidth + overhead_s,
            converged=converging & ~capped,
        )


class MigrationEstimate(NamedTuple):
    """Arrays of the broadcast shape of ``memory_gb`` and ``load_pct``."""

    dirty_rate_mbps: NDArray[np.float64]
    rounds: NDArray[np.int64]  # pre-copy rounds before the stop-and-copy
    downtime_ms: NDArray[np.float64]
    total_s: NDArray[np.float64]
    converged: NDArray[np.bool_]  # False: round limit hit, or dirty rate >= bandwidth


def simulate_precopy(
    memory_gb: float, load_pct: float, model: MigrationModel, coeff: float | None = None
) -> dict[str, object]:
    """The rounds one at a time, for one guest: the reference the closed form is tested against."""
    memory_mb = memory_gb * MB_PER_GB
    bandwidth = model.bandwidth_mbps
    dirty = float(model.dirty_rate_mbps(memory_gb, load_pct, coeff))
    sent: list[float] = [memory_mb]  # round 0: everything
    while True:
        dirtied = min(memory_mb, dirty * sent[-1] / bandwidth)
        if dirty >= bandwidth:
            stop = "non-convergent"
        elif dirtied <= model.stop_threshold_mb:
            stop = "threshold"
        elif len(sent) >= model.max_rounds:
            stop = "max_rounds"
        else:
            sent.append(dirtied)
            continue
        return {
            "precopy_mb": sent,
            "stop_copy_mb": dirtied,
            "stop": stop,
            "downtime_ms": dirtied / bandwidth * 1000.0 + model.resume_overhead_ms,
            "total_s": (sum(sent) + dirtied) / bandwidth + model.resume_overhead_ms / 1000.0,
        }
