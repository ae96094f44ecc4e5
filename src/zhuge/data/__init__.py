"""Fleet metrics data layer: read, clean, aggregate and synthesise VM telemetry.

Pure functions on pandas frames; nothing here touches the job store, the API or Dask.
"""

from zhuge.data.aggregation import aggregate, resample_series, roll_up
from zhuge.data.cleaning import (
    REPORT_COLUMNS,
    CleaningRules,
    PreparedFleet,
    clean_fleet,
    detect_level_shifts,
)
from zhuge.data.demo import (
    FleetFiles,
    fleet_profiles,
    generate_fleet,
    generate_vms,
    iter_generate_fleet,
    write_fleet,
)
from zhuge.data.sources import (
    Telemetry,
    iter_series_chunks,
    parse_column_map,
    parse_timestamps,
    read_sql,
    read_telemetry,
)

__all__ = [
    "REPORT_COLUMNS",
    "CleaningRules",
    "FleetFiles",
    "PreparedFleet",
    "Telemetry",
    "aggregate",
    "clean_fleet",
    "detect_level_shifts",
    "fleet_profiles",
    "generate_fleet",
    "generate_vms",
    "iter_generate_fleet",
    "iter_series_chunks",
    "parse_column_map",
    "parse_timestamps",
    "read_sql",
    "read_telemetry",
    "resample_series",
    "roll_up",
    "write_fleet",
]
