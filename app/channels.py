"""Loading the patient-facing channels: portal exports and community posts.

Same two phases as the FHIR pipeline (parse into inspectable batches, then batched
``UNWIND ... MERGE``), the same quarantine file and report, plus the change set the change feed
needs: which Patient records got which kinds of data.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.pipeline import LoadReport, Quarantine, finish_load, write_tracked
from graph.connection import Driver
from loaders import portal, social
from loaders.fhir import ParsedUnit
from mpi.service import MasterIndex
from ontology.records import GraphBatch

_INDEX = re.compile(r"\[\d+\]")


@dataclass(slots=True)
class ChannelLoadReport(LoadReport):
    @property
    def changes(self) -> dict[str, set[str]]:
        """Patient record uid -> kinds of data created or changed (labels): the change feed's."""
        return self.changed


def load_portal(
    driver: Driver,
    paths: Sequence[Path],
    *,
    quarantine_dir: Path,
    portal_name: str | None = None,
    batch_size: int = 5000,
    database: str | None = None,
    on_file: Callable[[Path], None] | None = None,
    index: MasterIndex | None = None,
    link: bool = True,
    notify: bool = True,
) -> ChannelLoadReport:
    """Load portal account exports (``.json`` per account or ``.ndjson``) under ``paths``;
    then link new accounts to persons and publish the changes (as ``load_fhir`` does)."""
    files = portal.discover(paths)
    return _load(
        driver,
        ((path, list(portal.parse_file(path, portal=portal_name))) for path in files),
        files=len(files),
        quarantine_dir=quarantine_dir,
        batch_size=batch_size,
        database=database,
        on_file=on_file,
        source=f"load:portal:{','.join(str(p) for p in paths)}",
        index=index,
        link=link,
        notify=notify,
    )


def load_social(
    driver: Driver,
    paths: Sequence[Path],
    *,
    quarantine_dir: Path,
    batch_size: int = 5000,
    database: str | None = None,
    on_file: Callable[[Path], None] | None = None,
    index: MasterIndex | None = None,
    link: bool = True,
    notify: bool = True,
) -> ChannelLoadReport:
    """Load community post / message NDJSON files under ``paths``; then link and publish."""
    files = social.discover(paths)
    return _load(
        driver,
        ((path, [social.parse_file(path)]) for path in files),
        files=len(files),
        quarantine_dir=quarantine_dir,
        batch_size=batch_size,
        database=database,
        on_file=on_file,
        source=f"load:social:{','.join(str(p) for p in paths)}",
        index=index,
        link=link,
        notify=notify,
    )


def _load(
    driver: Driver,
    parsed: Iterable[tuple[Path, list[ParsedUnit]]],
    *,
    files: int,
    quarantine_dir: Path,
    batch_size: int,
    database: str | None,
    on_file: Callable[[Path], None] | None,
    source: str,
    index: MasterIndex | None,
    link: bool,
    notify: bool,
    flush_every: int = 50_000,
) -> ChannelLoadReport:
    started = time.perf_counter()
    report = ChannelLoadReport(files=files)
    quarantine = Quarantine(quarantine_dir)
    pending = GraphBatch()

    def flush() -> None:
        nonlocal pending
        if len(pending):
            write_tracked(driver, pending, report, batch_size=batch_size, database=database)
            pending = GraphBatch()

    for path, units in parsed:
        for unit in units:
            report.units += 1
            report.parsed.update(unit.parsed)
            quarantine.add(unit.quarantined)
            for q in unit.quarantined:
                report.reasons[_INDEX.sub("[]", q.reason.split(":")[0])[:60]] += 1
            pending.extend(unit.batch)
        if on_file:
            on_file(path)
        if len(pending) >= flush_every:
            flush()
    flush()
    finish_load(
        driver,
        report,
        source=source,
        index=index,
        link=link,
        notify=notify,
        database=database,
    )
    report.quarantined = quarantine.count
    report.quarantine_file = quarantine.path if quarantine.count else None
    report.seconds = time.perf_counter() - started
    return report
