"""The operational data store's registry: which domain holds which kinds of data on a person.

Every write path (loads, mutations, device ingest, identity links) ends in :func:`publish`:
it stamps the registry, appends to the change feed's outbox (``graph/outbox.py``), from which
subscriptions and webhooks are served, and writes one audit event per changed person naming
the :class:`Writer` (``graph/consent.py``'s hash-chained trail), so the patient's access log
shows who wrote their data as well as who read it.

A write path stamps the Patient records it changed (``updatedAt``, and per kind of data the
time in ``updatedKinds``/``updatedTimes``, parallel lists because Neo4j properties cannot be
maps); :data:`RECORD_KINDS` reads, per record, each kind of fact with its count, newest date
and last update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import neo4j

from graph.consent import Writer, append_audit
from graph.outbox import ChangeEventRow, emit_changes

#: Batch loads (CLI, demo, pipelines): the event's ``basis`` names the load and its files.
LOADER = Writer("system:load", "system")
#: Linking runs (after a load, ``medshadow mpi link``); a steward's decisions are the steward's.
IDENTITY_LINKER = Writer("system:mpi", "system")

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
    writer: Writer | None,
    database: str | None = None,
) -> list[ChangeEventRow]:
    """Record that these Patient records changed (record uid -> kinds of data).

    ``writer`` None only where the caller audits the write itself, in its request's trail.
    """
    wanted = {uid: sorted(set(kinds)) for uid, kinds in changes.items() if kinds}
    if not wanted:
        return []
    touch_records(driver, wanted, now=datetime.now(UTC), database=database)
    events = emit_changes(driver, wanted, source=source, database=database)
    if writer is not None:
        append_audit(driver, write_events(events, writer), database=database)
    return events


def write_events(events: Sequence[ChangeEventRow], writer: Writer) -> list[dict[str, Any]]:
    """Audit rows for published changes: one per (person, domain) event. Records no person
    holds yet (a load run without linking) are named in ``what`` instead."""
    return [
        writer.event(
            e.person_uid,
            "write",
            f"{', '.join(e.kinds)} in {e.domain}"
            + ("" if e.person_uid else f" (unlinked: {', '.join(e.records)})"[:500]),
            basis=e.source[:200],
            at=e.at,
            request=f"change:{e.seq}",  # a system job's events: one per change event
        )
        for e in events
    ]
