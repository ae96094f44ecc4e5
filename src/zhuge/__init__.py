"""zhuge: a self-hosted, elastic ML job platform.

Fleet load forecasting and live-migration planning, clustering, anomaly detection and
parameter search, as durable jobs on a SQL queue executed by Dask.
"""

from zhuge.client import Client, JobHandle
from zhuge.errors import ZhugeError

__version__ = "0.1.0"

__all__ = ["Client", "JobHandle", "ZhugeError", "__version__"]
