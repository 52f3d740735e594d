"""The operational data store's registry: which domain holds which kinds of data on a person.

Every write path (loads, mutations, device ingest) ends in :func:`publish`: it stamps the
registry and appends to the change feed's outbox (``graph/outbox.py``), from which
subscriptions and webhooks are served.

A write path stamps the Patient records it changed (``updatedAt``, and per kind of data the
time in ``updatedKinds``/``updatedTimes``, parallel lists because Neo4j properties cannot be
maps); :data:`RECORD_KINDS` reads, per record, each kind of fact with its count, newest date
and last update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import neo4j

from graph.outbox import ChangeEventRow, emit_changes

# Merge the new kinds into the record's parallel lists, newest time wins.
TOUCH_RECORDS = """
UNWIND $rows AS row
MATCH (r:Patient {uid: row.uid})
WITH r, row,
     [i IN range(0, size(coalesce(r.updatedKinds, [])) - 1)
        WHERE NOT r.updatedKinds[i] IN row.kinds | [r.updatedKinds[i], r.updatedTimes[i]]]
       + [k IN row.kinds | [k, $now]] AS pairs
SET r.updatedAt = $now,
    r.updatedKinds = [p IN pairs | p[0]],
    r.updatedTimes = [p IN pairs | p[1]]
"""


def touch_records(
    driver: neo4j.Driver,
    changes: Mapping[str, Iterable[str]],
    *,
    now: datetime,
    database: str | None = None,
) -> None:
    """Stamp each changed record with the time and the kinds of data that changed."""
    rows = [{"uid": uid, "kinds": sorted(set(kinds))} for uid, kinds in changes.items()]
    for i in range(0, len(rows), 5000):
        driver.execute_query(
            TOUCH_RECORDS,
            rows=rows[i : i + 5000],
            now=now,
            routing_=neo4j.RoutingControl.WRITE,
            database_=database,
        )


def publish(
    driver: neo4j.Driver,
    changes: Mapping[str, Iterable[str]],
    *,
    source: str,
    database: str | None = None,
) -> list[ChangeEventRow]:
    """Record that these Patient records changed (record uid -> kinds of data)."""
    wanted = {uid: sorted(set(kinds)) for uid, kinds in changes.items() if kinds}
    if not wanted:
        return []
    touch_records(driver, wanted, now=datetime.now(UTC), database=database)
    return emit_changes(driver, wanted, source=source, database=database)
