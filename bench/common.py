"""Shared helpers of the benchmarks: a throwaway Neo4j, cached populations, small statistics.

Nothing here times anything by itself; each script measures its own figures and the baseline
it compares them with in the same run, on the same machine.
"""

from __future__ import annotations

import math
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from app.settings import REPO_ROOT
from graph.connection import Driver, open_driver
from graph.embedded import EmbeddedNeo4j, free_port
from graph.schema import ensure_schema
from loaders.fhir import discover
from loaders.synthea import ensure_split, generate

BENCH_DATA = REPO_ROOT / ".medshadow" / "bench"
JARS = REPO_ROOT / "tools" / "neo4j" / "target"
DEFAULT_SEED = 2026


# --------------------------------------------------------------------------- Neo4j


@dataclass(frozen=True, slots=True)
class BenchNeo4j:
    """A running throwaway server and a driver connected to it, with its schema in place."""

    driver: Driver
    uri: str
    home: Path
    start_seconds: float


@contextmanager
def fresh_neo4j(*, heap: str = "2g", pagecache: str = "1g") -> Iterator[BenchNeo4j]:
    """An empty embedded Neo4j in a temporary home on a free port; deleted on exit."""
    with tempfile.TemporaryDirectory(prefix="medshadow-bench-neo4j-") as tmp:
        home = Path(tmp)
        server = EmbeddedNeo4j(home, port=free_port(), jars=JARS, heap=heap, pagecache=pagecache)
        started = time.perf_counter()
        status = server.start(timeout_s=180)
        try:
            uri = status.uri
            if uri is None:
                raise RuntimeError("embedded Neo4j reported ready without a Bolt URI")
            driver = open_driver(uri, "neo4j", None)
            try:
                ensure_schema(driver)
                yield BenchNeo4j(driver, uri, home, time.perf_counter() - started)
            finally:
                driver.close()
        finally:
            server.stop()


# --------------------------------------------------------------------------- the app


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """The app under uvicorn in a daemon thread, on a free port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Population:
    """A seeded Synthea population split into one FHIR bundle per (clinic, patient)."""

    patients: int
    seed: int
    root: Path
    domains: Path
    #: Every load unit (one bundle file each), in the order ``load_fhir`` loads them.
    bundles: tuple[Path, ...]
    organisations: int


def population(patients: int, seed: int = DEFAULT_SEED) -> Population:
    """Generate (or reuse) ``.medshadow/bench/p{N}-s{seed}`` and split it per provider.

    ``generate`` reuses a complete earlier run; the split is redone only when the raw
    population changed (a marker holds the hash of the raw manifest it was made from).
    """
    root = BENCH_DATA / f"p{patients}-s{seed}"
    started = time.perf_counter()
    fhir = generate(root / "raw", population=patients, seed=seed)
    generated = time.perf_counter() - started
    if generated > 5:
        log(f"generated {patients} patients (seed {seed}) in {generated:.0f} s")
    domains = root / "domains"
    started = time.perf_counter()
    report = ensure_split(fhir, domains)
    if report is not None:
        log(
            f"split {report.patients} patients into {report.bundles_written} clinic bundles "
            f"in {time.perf_counter() - started:.0f} s"
        )
        if report.errors:
            # e.g. a newborn no clinic has seen yet: there is no clinic record to load
            log(f"split skipped {len(report.errors)} raw bundles: {report.errors[0]}")
    units = discover([domains])
    if any(len(unit) != 1 for unit in units):
        raise RuntimeError(f"expected one bundle file per load unit under {domains}")
    organisations = sum(1 for p in domains.iterdir() if p.is_dir())
    return Population(
        patients=patients,
        seed=seed,
        root=root,
        domains=domains,
        bundles=tuple(unit[0] for unit in units),
        organisations=organisations,
    )


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


# --------------------------------------------------------------------------- output


def log(message: str) -> None:
    """Progress to stderr, so stdout holds only the results."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def num(value: float, decimals: int = 0) -> str:
    """Thousands separators: ``612,345`` / ``41.2``."""
    return f"{value:,.{decimals}f}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        return "  ".join(parts).rstrip()

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
