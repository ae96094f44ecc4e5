"""``zhuge demo-data migrations``: a history of past live migrations, as
``zhuge calibrate-migrations --history`` reads it (``zhuge demo-data fleet`` is in
:mod:`zhuge.cli.forecast`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zhuge.cli.common import JsonOpt, console, print_json, user_errors

MIGRATIONS_HELP = """Write a synthetic history of past live migrations (CSV or Parquet, by the \
file's suffix): vm_id, start, memory_gb, observed_load, downtime_ms, total_s.

Each row is what the pre-copy model would have measured for that VM's memory and load, with \
--noise (log-normal) on both durations; some VMs dirty memory faster than others. \
Deterministic by --seed.

\b
Example:
  zhuge demo-data migrations --out past_migrations.csv --migrations 400 --vms 60
  zhuge calibrate-migrations --history past_migrations.csv --out calibration.json
"""


def demo_migrations_command(
    out: Annotated[Path, typer.Option("--out", help="The file to write: .csv or .parquet.")],
    migrations: Annotated[int, typer.Option("--migrations", help="Past migrations.")] = 300,
    vms: Annotated[int, typer.Option("--vms", help="Distinct VMs they moved.")] = 50,
    noise: Annotated[
        float, typer.Option("--noise", help="Measurement noise (log-normal sigma).")
    ] = 0.03,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    json_output: JsonOpt = False,
) -> None:
    import numpy as np

    from zhuge.cli.run import checked_out
    from zhuge.errors import DataError
    from zhuge.migration.calibration.history import synthetic_history
    from zhuge.migration.model import MigrationModel

    with user_errors(json_output):
        if migrations < 3 or vms < 1:
            raise DataError(
                f"--migrations must be at least 3 (a fit needs them) and --vms at least 1 "
                f"(got {migrations}, {vms})"
            )
        if not 0 <= noise < 1:
            raise DataError(f"--noise must be in [0, 1), not {noise:g}")
        path = checked_out(out)
        if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise DataError(f"--out {out}: name a .csv or .parquet file")
        rng = np.random.default_rng(seed)
        coeff = MigrationModel().dirty_rate_coeff * rng.lognormal(0, 0.3, vms)
        history = synthetic_history(
            migrations, MigrationModel(), n_vms=vms, vm_coeff=coeff, noise=noise, seed=seed
        )
        history = history.sort_values("start", ignore_index=True)
        history["start"] = history["start"].dt.floor("s")
        if path.suffix.lower() == ".csv":
            history.to_csv(path, index=False)
        else:
            history.to_parquet(path, index=False)
    summary = {"out": str(path), "migrations": migrations, "vms": int(history["vm_id"].nunique())}
    if json_output:
        print_json(summary)
        return
    console.print(f"wrote {migrations:,} past migrations of {summary['vms']} VMs to {path}")
    console.print(f"next: zhuge calibrate-migrations --history {path}", highlight=False)
