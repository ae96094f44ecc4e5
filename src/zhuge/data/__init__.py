"""Fleet metrics data layer: read, clean, aggregate and synthesise VM telemetry."""

from zhuge.data.cleaning import CleaningRules, PreparedFleet, clean_fleet, detect_level_shifts
from zhuge.data.sources import (
    Telemetry,
    iter_series_chunks,
    parse_column_map,
    parse_timestamps,
    read_sql,
    read_telemetry,
)

__all__ = [
    "CleaningRules",
    "PreparedFleet",
    "Telemetry",
    "clean_fleet",
    "detect_level_shifts",
    "iter_series_chunks",
    "parse_column_map",
    "parse_timestamps",
    "read_sql",
    "read_telemetry",
]
