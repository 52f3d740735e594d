"""Loading the patient-facing channels: portal exports and community posts.

Same two phases as the FHIR pipeline (parse into inspectable batches, then batched
``UNWIND ... MERGE``), the same quarantine file and report, plus the change set the change feed
needs: which Patient records got which kinds of data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.pipeline import LoadReport, load_units
from graph.connection import Driver
from loaders import portal, social
from loaders.fhir import ParsedUnit
from mpi.service import MasterIndex


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
) -> ChannelLoadReport:
    def units() -> Iterator[ParsedUnit]:
        for path, file_units in parsed:
            yield from file_units
            if on_file:
                on_file(path)

    return load_units(
        driver,
        units(),
        ChannelLoadReport(files=files),
        quarantine_dir=quarantine_dir,
        source=source,
        batch_size=batch_size,
        database=database,
        index=index,
        link=link,
        notify=notify,
    )
