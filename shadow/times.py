"""Dates and times as the graph returns them (Neo4j temporal values or Python ones)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any


def native(value: Any) -> Any:
    return value.to_native() if hasattr(value, "to_native") else value


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
