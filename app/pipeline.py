"""The load pipeline: parse FHIR (loaders/) into typed batches, then write them (graph/)."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import orjson

from graph.connection import Driver
from graph.mapping import apply_concept_maps
from graph.registry import LOADER, publish
from graph.writer import WriteStats, write_batch
from loaders.fhir import ParsedUnit, Quarantined, discover, parse_unit
from mpi.service import LinkReport, MasterIndex
from ontology.model import Label, RelType
from ontology.records import GraphBatch


@dataclass(slots=True)
class LoadReport:
    files: int = 0
    units: int = 0
    parsed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    quarantined: int = 0
    quarantine_file: Path | None = None
    write: WriteStats = field(default_factory=WriteStats)
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    #: The master patient index run that followed the write (None: linking was off).
    link: LinkReport | None = None
    #: Patient record uid -> kinds of data this load created or changed (the change feed).
    changed: dict[str, set[str]] = field(default_factory=dict)
    #: Change events appended to the outbox.
    events: int = 0
    #: Facts given a standard code through a published concept map (local codes).
    mapped: int = 0

    @property
    def facts(self) -> int:
        """Graph elements written (nodes + relationships): the unit of load throughput."""
        return sum(self.write.nodes_written.values()) + sum(self.write.rels_written.values())

    @property
    def ok(self) -> bool:
        return self.quarantined == 0 and not self.write.dangling


class Quarantine:
    """Append-only NDJSON of rejected resources with reason and location; created on first use."""

    def __init__(self, directory: Path) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.path = directory / f"load-{stamp}.ndjson"
        self.count = 0

    def add(self, items: Sequence[Quarantined]) -> None:
        if not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as fh:
            for q in items:
                fh.write(
                    orjson.dumps(
                        {
                            "location": q.location,
                            "resourceType": q.resource_type,
                            "id": q.resource_id,
                            "reason": q.reason,
                            "resource": q.resource,
                        },
                        default=str,
                    )
                    + b"\n"
                )
        self.count += len(items)


def load_fhir(
    driver: Driver,
    paths: Sequence[Path],
    *,
    quarantine_dir: Path,
    domain: str | None = None,
    batch_size: int = 5000,
    include_claims: bool = False,
    database: str | None = None,
    on_unit: Callable[[ParsedUnit], None] | None = None,
    flush_every: int = 50_000,
    index: MasterIndex | None = None,
    link: bool = True,
    notify: bool = True,
) -> LoadReport:
    """Load bundles / NDJSON under ``paths``. Bad resources are quarantined, the rest loads.

    Units are parsed one by one and their batches merged until ``flush_every`` graph elements
    are pending, then written in ``batch_size`` chunks: few large transactions instead of one
    per resource, with bounded memory. Then the new Patient records are linked to persons by
    the master patient index (``index``, or one with default thresholds) unless ``link`` is off,
    and the records whose data changed are published to the change feed unless ``notify`` is
    off (a re-load of unchanged data changes nothing and tells no one).
    """
    units = discover(paths)
    report = LoadReport(files=sum(len(u) for u in units))

    def parsed() -> Iterator[ParsedUnit]:
        for files in units:
            unit = parse_unit(files, domain=domain, include_claims=include_claims)
            yield unit
            if on_unit:
                on_unit(unit)

    return load_units(
        driver,
        parsed(),
        report,
        quarantine_dir=quarantine_dir,
        source=f"load:fhir:{','.join(str(p) for p in paths)}",
        batch_size=batch_size,
        database=database,
        flush_every=flush_every,
        index=index,
        link=link,
        notify=notify,
    )


_INDEX = re.compile(r"\[\d+\]")


def reason_key(reason: str) -> str:
    """A quarantine reason without its particulars, for counting (``field[3]: ...`` ->
    ``field[]``)."""
    return _INDEX.sub("[]", reason.split(":")[0].split("=")[0])[:60]


R = TypeVar("R", bound=LoadReport)


def load_units(
    driver: Driver,
    units: Iterable[ParsedUnit],
    report: R,
    *,
    quarantine_dir: Path,
    source: str,
    batch_size: int = 5000,
    database: str | None = None,
    flush_every: int = 50_000,
    index: MasterIndex | None = None,
    link: bool = True,
    notify: bool = True,
) -> R:
    """Phase two of every batch load: quarantine the bad, merge the good into batches of
    about ``flush_every`` elements, write them (tracking which records changed), then link
    and publish (:func:`finish_load`)."""
    started = time.perf_counter()
    quarantine = Quarantine(quarantine_dir)
    pending = GraphBatch()
    for unit in units:
        report.units += 1
        report.parsed.update(unit.parsed)
        report.skipped.update(unit.skipped)
        quarantine.add(unit.quarantined)
        for q in unit.quarantined:
            report.reasons[reason_key(q.reason)] += 1
        pending.extend(unit.batch)
        if len(pending) >= flush_every:
            write_tracked(driver, pending, report, batch_size=batch_size, database=database)
            pending = GraphBatch()
    if len(pending):
        write_tracked(driver, pending, report, batch_size=batch_size, database=database)
    finish_load(
        driver, report, source=source, index=index, link=link, notify=notify, database=database
    )
    report.quarantined = quarantine.count
    report.quarantine_file = quarantine.path if quarantine.count else None
    report.seconds = time.perf_counter() - started
    return report


def write_tracked(
    driver: Driver,
    batch: GraphBatch,
    report: LoadReport,
    *,
    batch_size: int = 5000,
    database: str | None = None,
) -> None:
    """Write ``batch``; note in ``report.changed`` which Patient records got new or changed
    data of which kinds (unchanged rows are skipped by the writer and not reported)."""
    owner = _record_of_facts(batch)

    def changed(label: Label, uids: list[str]) -> None:
        for uid in uids:
            record = uid if label is Label.PATIENT else owner.get(uid)
            if record is not None:
                report.changed.setdefault(record, set()).add(label.value)

    report.write.add(
        write_batch(driver, batch, batch_size=batch_size, database=database, on_changed=changed)
    )


def finish_load(
    driver: Driver,
    report: LoadReport,
    *,
    source: str,
    index: MasterIndex | None = None,
    link: bool = True,
    notify: bool = True,
    database: str | None = None,
) -> None:
    """After any load: give locally coded facts the standard codes of the published concept
    maps, link new Patient records to persons, then publish what changed."""
    if report.write.nodes_written.get(Label.CONCEPT.value):
        report.mapped = apply_concept_maps(driver, database=database)
    if link:
        report.link = (index or MasterIndex(driver, database=database)).link_pending()
    if notify and report.changed:
        events = publish(
            driver, report.changed, source=source[:500], writer=LOADER, database=database
        )
        report.events = len(events)


def _record_of_facts(batch: GraphBatch) -> dict[str, str]:
    """Fact uid -> uid of the Patient record it is ABOUT (components via their parent)."""
    owner = {
        rel.start: rel.end
        for rel in batch.rel_rows()
        if rel.type is RelType.ABOUT and rel.end_label is Label.PATIENT
    }
    for rel in batch.rel_rows():
        if rel.type is RelType.HAS_COMPONENT and rel.start in owner:
            owner.setdefault(rel.end, owner[rel.start])
    return owner


def load_fhir_naive(
    driver: Driver, paths: Sequence[Path], *, database: str | None = None
) -> LoadReport:
    """Baseline for the benchmark only: one transaction per parsed resource's graph rows."""
    started = time.perf_counter()
    report = LoadReport()
    for files in discover(paths):
        unit = parse_unit(files)
        report.units += 1
        report.parsed.update(unit.parsed)
        # Nodes must exist before relationships point at them: write all nodes, then rels,
        # each row in its own transaction.
        for node in list(unit.batch.node_rows()):
            one = GraphBatch()
            one.nodes[(node.label, node.uid)] = node
            report.write.add(write_batch(driver, one, database=database))
        for key, rel in list(unit.batch.rels.items()):
            one = GraphBatch()
            one.rels[key] = rel
            report.write.add(write_batch(driver, one, database=database))
    report.seconds = time.perf_counter() - started
    return report
