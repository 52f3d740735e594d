"""The readings pipeline: parsed lines (loaders/readings.py) -> batched writes (graph/readings.py).

One :class:`ReadingBatcher` serves every path in: the CLI load (files), the streaming HTTP
endpoint (``app/ingest.py``) and the GraphQL mutation. It groups good readings into batches,
writes each batch with the given function, and turns readings whose account has no Patient
record into rejected lines - nothing is silently dropped.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.pipeline import LoadReport, Quarantine, write_tracked
from graph.connection import Driver
from graph.readings import ReadingWriteResult, write_readings
from graph.registry import LOADER, publish
from graph.writer import WriteStats
from loaders.fhir import Quarantined
from loaders.patient_record import merge_changes
from loaders.readings import (
    Account,
    DeviceRow,
    Reading,
    Rejected,
    accounts_batch,
    check_vendor,
    discover_iot,
    parse_accounts_file,
    parse_devices_file,
    parse_readings_file,
)
from mpi.service import LinkReport, MasterIndex

WriteFn = Callable[[Sequence[Reading]], ReadingWriteResult]


@dataclass(slots=True)
class ReadingBatcher:
    """Collect readings, write them ``batch_size`` at a time, keep every rejection."""

    write: WriteFn
    batch_size: int = 1000
    result: ReadingWriteResult = field(default_factory=ReadingWriteResult)
    rejected: list[Rejected] = field(default_factory=list)
    lines: int = 0
    _pending: list[Reading] = field(default_factory=list)
    _where: list[str] = field(default_factory=list)

    def add(self, where: str, item: Reading | Rejected) -> bool:
        """Take one parsed line; True when a batch is full and :meth:`flush` is due."""
        self.lines += 1
        if isinstance(item, Rejected):
            self.rejected.append(item)
        else:
            self._pending.append(item)
            self._where.append(where)
        return len(self._pending) >= self.batch_size

    def take(self) -> tuple[list[Reading], list[str]]:
        """Hand the pending batch over (for callers that write it elsewhere, e.g. a thread)."""
        batch, where = self._pending, self._where
        self._pending, self._where = [], []
        return batch, where

    def record(
        self, batch: Sequence[Reading], where: Sequence[str], out: ReadingWriteResult
    ) -> None:
        """Account for one written batch; orphans (unknown accounts) become rejections."""
        for i in out.orphans:
            r = batch[i]
            self.rejected.append(
                Rejected(
                    where[i],
                    f"unknown account {r.account_id!r}: no Patient record {r.record_uid} "
                    "(load the vendor's accounts first)",
                    f"{r.account_id},{r.device_id},{r.metric.key},{r.time},{r.value}",
                )
            )
        for i in out.conflicts:
            r = batch[i]
            self.rejected.append(
                Rejected(
                    where[i],
                    f"device {r.device_id!r} belongs to another account than {r.account_id!r}",
                    f"{r.account_id},{r.device_id},{r.metric.key},{r.time},{r.value}",
                )
            )
        out.orphans, out.conflicts = [], []
        self.result.add(out)

    def flush(self) -> None:
        batch, where = self.take()
        if batch:
            self.record(batch, where, self.write(batch))

    @property
    def accepted(self) -> int:
        return self.result.accepted


@dataclass(slots=True)
class ReadingsLoadReport:
    files: int = 0
    accounts: int = 0
    devices: int = 0
    lines: int = 0
    readings: ReadingWriteResult = field(default_factory=ReadingWriteResult)
    write: WriteStats = field(default_factory=WriteStats)
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    quarantine_file: Path | None = None
    changes: dict[str, set[str]] = field(default_factory=dict)
    seconds: float = 0.0
    #: The master patient index run after the accounts were written (None: linking was off).
    link: LinkReport | None = None
    events: int = 0

    @property
    def ok(self) -> bool:
        return self.rejected == 0 and not self.write.dangling


def _quarantine(quarantine: Quarantine, report: ReadingsLoadReport, bad: list[Rejected]) -> None:
    quarantine.add([Quarantined(b.location, "Reading", None, b.reason, b.line) for b in bad])
    report.rejected += len(bad)
    for b in bad:
        report.reasons[b.reason.split(":")[0].split("(")[0].strip()[:60]] += 1


def load_readings(
    driver: Driver,
    paths: Sequence[Path],
    *,
    vendor: str,
    quarantine_dir: Path,
    batch_size: int = 5000,
    database: str | None = None,
    on_file: Callable[[Path], None] | None = None,
    on_lines: Callable[[int], None] | None = None,
    index: MasterIndex | None = None,
    link: bool = True,
    notify: bool = True,
) -> ReadingsLoadReport:
    """Load an IoT cloud's export: accounts and devices first, then every readings file.

    Bad lines go to a quarantine NDJSON with ``file:line`` and reason; good lines load. Loading
    the same files again changes nothing (see graph/readings.py)."""
    started = time.perf_counter()
    check_vendor(vendor)
    report = ReadingsLoadReport()
    quarantine = Quarantine(quarantine_dir)
    files = discover_iot(paths)
    report.files = len(files)

    accounts: list[Account] = []
    devices: list[DeviceRow] = []
    bad: list[Rejected] = []
    for path in files.accounts:
        for account in parse_accounts_file(path, vendor=vendor):
            if isinstance(account, Rejected):
                bad.append(account)
            else:
                accounts.append(account)
        if on_file:
            on_file(path)
    for path in files.devices:
        for dev in parse_devices_file(path, vendor=vendor):
            if isinstance(dev, Rejected):
                bad.append(dev)
            else:
                devices.append(dev)
        if on_file:
            on_file(path)
    _quarantine(quarantine, report, bad)
    report.accounts, report.devices = len(accounts), len(devices)
    batch, _ = accounts_batch(vendor, accounts, devices)
    accounts_written = LoadReport()
    write_tracked(driver, batch, accounts_written, batch_size=batch_size, database=database)
    report.write.add(accounts_written.write)
    merge_changes(report.changes, accounts_written.changed)
    if link:  # accounts become persons' records before their readings are announced
        report.link = (index or MasterIndex(driver, database=database)).link_pending()

    def write(rs: Sequence[Reading]) -> ReadingWriteResult:
        out = write_readings(driver, rs, database=database)
        if on_lines:
            on_lines(len(rs))
        return out

    for path in files.readings:
        batcher = ReadingBatcher(write, batch_size=batch_size)
        for where, item in parse_readings_file(path, vendor=vendor):
            if batcher.add(where, item):
                batcher.flush()
        batcher.flush()
        report.lines += batcher.lines
        report.readings.add(batcher.result)
        merge_changes(report.changes, batcher.result.changes)
        _quarantine(quarantine, report, batcher.rejected)
        if on_file:
            on_file(path)
    if notify and report.changes:
        source = f"load:readings:{','.join(str(p) for p in paths)}"[:500]
        events = publish(driver, report.changes, source=source, writer=LOADER, database=database)
        report.events = len(events)
    report.quarantine_file = quarantine.path if quarantine.count else None
    report.seconds = time.perf_counter() - started
    return report
