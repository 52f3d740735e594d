"""Dates and times as the graph returns them (Neo4j temporal values or Python ones)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any


def native(value: Any) -> Any:
    return value.to_native() if hasattr(value, "to_native") else value


def epoch(value: Any) -> int:
    """Epoch seconds of a date-time (naive means UTC) or a date (its midnight, UTC)."""
    value = native(value)
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
    raise TypeError(f"not a date/time: {value!r}")


def day_of(value: Any) -> date | None:
    """The calendar day of a date, a date-time or an ISO text (``1976-05-17``); None stays."""
    value = native(value)
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    raise TypeError(f"not a date: {value!r}")
