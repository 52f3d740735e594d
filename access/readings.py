"""Checked access to device readings: ingest (devices, admins) and reads (clinicians, ...).

Like :class:`access.policy.RecordAccess`, every method checks the principal before any query
runs; the resolvers and the HTTP ingest endpoint never call ``graph/readings.py`` directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from access.consent import VITAL_FACTS
from access.policy import Action, Principal, require
from access.records import RecordAccess
from graph import readings as q
from graph.connection import Driver
from graph.reader import GraphReader
from graph.readings import ReadingRow, ReadingWriteResult, TrendPoint
from graph.registry import publish

#: Called with {Patient record uid: {data kinds}} after a write that changed something.
OnChanges = Callable[[dict[str, set[str]]], None]


class ReadingAccess:
    """One principal's checked ingest and reads of reading series (one per request)."""

    def __init__(
        self,
        reader: GraphReader,
        principal: Principal,
        *,
        on_changes: OnChanges | None = None,
        records: RecordAccess | None = None,
    ) -> None:
        self._reader = reader
        self.principal = principal
        self._on_changes = on_changes
        self._records = records or RecordAccess(reader, principal)

    @classmethod
    def for_driver(
        cls,
        driver: Driver,
        principal: Principal,
        *,
        database: str | None = None,
        on_changes: OnChanges | None = None,
        audit: bool = True,
    ) -> ReadingAccess:
        records = RecordAccess.for_driver(driver, principal, database=database, audit=audit)
        return cls.of(records, on_changes=on_changes)

    @classmethod
    def of(cls, records: RecordAccess, *, on_changes: OnChanges | None = None) -> ReadingAccess:
        """Share a request's reader (and its round-trip count) with its record access."""
        return cls(records.reader, records.principal, on_changes=on_changes, records=records)

    def require_ingest(self) -> None:
        require(self.principal, Action.INGEST_READINGS)

    def ingest(self, readings: Sequence[ReadingRow]) -> ReadingWriteResult:
        self.require_ingest()
        driver, database = self._reader.driver, self._reader.database
        result = q.write_readings(driver, readings, database=database)
        if result.changes:
            # the operational data store and the change feed hear of every write
            publish(
                driver,
                result.changes,
                source="ingest:readings",
                writer=self._records.guard.writer,
                database=database,
            )
            if self._on_changes is not None:
                self._on_changes(result.changes)
        return result

    def series(self, person_uids: Sequence[str], metric: str | None = None) -> list[dict[str, Any]]:
        """Reading series over each person's records (``RECORD_OF``), one row per series."""
        require(self.principal, Action.READ_PATIENT)
        guard = self._records.guard
        readable = guard.permitted(person_uids, "readings", VITAL_FACTS)
        if not readable:
            return []
        rows = self._reader.read(q.SERIES_OF_PERSONS, {"uids": sorted(readable), "metric": metric})
        return [dict(r) for r in rows]

    def trend(
        self, series_uids: Sequence[str], since: int, until: int, every: str
    ) -> list[TrendPoint]:
        require(self.principal, Action.READ_PATIENT)
        if not series_uids:
            return []
        rows = self._reader.read(q.TREND, q.trend_params(series_uids, since, until, every))
        return q.trend_points(rows)

    def window(
        self,
        series_uids: Sequence[str],
        since: int,
        until: int,
        limit: int,
        after: tuple[int, str] | None = None,
    ) -> list[tuple[str, int, float]]:
        """Raw readings in [since, until), ascending by (time, series uid), at most ``limit``."""
        require(self.principal, Action.READ_PATIENT)
        if not series_uids:
            return []
        rows = self._reader.read(q.WINDOW, q.window_params(series_uids, since, until, limit, after))
        return [(r["series"], int(r["t"]), float(r["v"])) for r in rows]
