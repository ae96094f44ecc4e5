"""Job kinds ``cluster``, ``cluster-predict`` and ``tune``: segmentation on the platform.

``cluster`` reads a table (CSV or Parquet, any fsspec URL), optionally turns it into features
with a template (``rfm``: one row per customer; ``load-profile``: one row per VM), plans the
resources, searches algorithms and parameters with
:class:`~zhuge.ml.cluster.Segmenter` -- each rung's candidates spread over the Dask workers
through ``ctx.map`` -- and writes to the attempt's artifact folder:

* ``labels.parquet``: ``label`` per row in the input's order (``-1``: noise), beside the id
  column when one was named (templates: one row per customer / VM, with its id);
* ``profile.parquet``: per cluster and numeric feature, mean / median vs the overall mean;
* ``model/``: the fitted preprocessing + model with a hashed manifest (``cluster-predict``);
* ``summary.json``: what the result holds.

**Too big for memory.** Before reading, the table's size is planned from the Parquet metadata
(rows x columns). If it would not fit, a k-means request (or ``auto``) on Parquet *streams*:
MiniBatchKMeans over pages of ``batch_rows`` rows, labels written in a second streaming pass
(``zhuge.ml.cluster.streaming``); k is chosen first on a uniform sample. Anything else is
refused with a message saying what would work. ``stream="on"`` streams whatever the size.

``tune`` runs the same search and reports every candidate (with the process that evaluated
it) without writing labels. Inputs are checked by :func:`prepare_input` before anything is
fitted or written; the CLI runs the same checks before submitting.
"""

from __future__ import annotations

from zhuge.jobs.cluster.inputs import (
    PreparedInput,
    Route,
    check_plan,
    choose_route,
    prepare_input,
    read_table,
)
from zhuge.jobs.cluster.kinds import resolve_model, run_cluster, run_cluster_predict, run_tune
from zhuge.jobs.cluster.params import (
    ALGORITHM_CHOICES,
    ClusterInputParams,
    ClusterParams,
    PredictParams,
    TuneParams,
)

__all__ = [
    "ALGORITHM_CHOICES",
    "ClusterInputParams",
    "ClusterParams",
    "PredictParams",
    "PreparedInput",
    "Route",
    "TuneParams",
    "check_plan",
    "choose_route",
    "prepare_input",
    "read_table",
    "resolve_model",
    "run_cluster",
    "run_cluster_predict",
    "run_tune",
]
