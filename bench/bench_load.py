"""Load throughput: the batched ``load_fhir`` against the one-transaction-per-row baseline.

For each population: a fresh Neo4j, ``load_fhir`` timed (graph elements/s, resources/s), a
second idempotent load of the same files timed (it must create nothing), and a parse-only pass
(how much of the load is Python). Then ``load_fhir_naive`` in another fresh Neo4j on the same
data - or, when it would take longer than ``--naive-budget`` seconds, on the first K clinic
bundles - and the ratio of the two elements/s figures.

    .venv/bin/python bench/bench_load.py                 # 100 patients
    .venv/bin/python bench/bench_load.py --patients 100 1000

Synthea generation is cached under ``.medshadow/bench``; the first run of a population pays
for it (about 2.5 min for 100 patients and 12 min for 1000 on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.pipeline import LoadReport, load_fhir, load_fhir_naive
from bench.common import (
    DEFAULT_SEED,
    Population,
    fresh_neo4j,
    log,
    num,
    population,
    print_table,
    rate,
)
from loaders.fhir import parse_unit


@dataclass(frozen=True, slots=True)
class Run:
    """One timed load."""

    label: str
    elements: int
    resources: int
    seconds: float
    transactions: int
    nodes_created: int
    rels_created: int

    @classmethod
    def of(cls, label: str, report: LoadReport) -> Run:
        return cls(
            label=label,
            elements=report.facts,
            resources=sum(report.parsed.values()),
            seconds=report.seconds,
            transactions=report.write.transactions,
            nodes_created=sum(report.write.nodes_created.values()),
            rels_created=sum(report.write.rels_created.values()),
        )

    @property
    def elements_per_s(self) -> float:
        return rate(self.elements, self.seconds)

    @property
    def resources_per_s(self) -> float:
        return rate(self.resources, self.seconds)


@dataclass(frozen=True, slots=True)
class PopulationResult:
    pop: Population
    first: Run
    again: Run
    parse_seconds: float


@dataclass(frozen=True, slots=True)
class NaiveResult:
    pop: Population
    run: Run
    bundles: int
    #: Why the run stopped before the last bundle (None: it loaded them all).
    cut: str | None
    #: Elements/s over the bundles that started after the first third of the run's time:
    #: the rate once the JVM has warmed up (the headline rate includes the cold start, as the
    #: batched load's does).
    warm_rate: float | None


def bench_population(pop: Population, batch_size: int) -> PopulationResult:
    with tempfile.TemporaryDirectory(prefix="medshadow-bench-q-") as tmp, fresh_neo4j() as db:
        quarantine = Path(tmp)
        log(
            f"{pop.patients} patients: load_fhir into a fresh database ({len(pop.bundles)} bundles)"
        )
        first = load_fhir(
            db.driver, [pop.domains], quarantine_dir=quarantine, batch_size=batch_size
        )
        _check(first)
        log(f"{pop.patients} patients: idempotent re-load")
        again = load_fhir(
            db.driver, [pop.domains], quarantine_dir=quarantine, batch_size=batch_size
        )
        _check(again)
    log(f"{pop.patients} patients: parse only")
    started = time.perf_counter()
    for bundle in pop.bundles:
        parse_unit([bundle])
    parse_seconds = time.perf_counter() - started
    return PopulationResult(
        pop, Run.of("load_fhir", first), Run.of("re-load", again), parse_seconds
    )


def _check(report: LoadReport) -> None:
    if not report.ok:
        raise SystemExit(
            f"load was not clean: {report.quarantined} quarantined {dict(report.reasons)}, "
            f"dangling {dict(report.write.dangling)}"
        )


def bench_naive(pop: Population, budget_s: float, max_bundles: int | None) -> NaiveResult:
    """Load bundle by bundle with the naive loader until the budget would be exceeded.

    Before each bundle its element count is known (parsing is cheap next to the naive
    writes), so the run stops *before* a bundle that the rate so far says would not fit.
    """
    bundles = pop.bundles[:max_bundles] if max_bundles is not None else pop.bundles
    total = LoadReport()
    done = 0
    cut: str | None = None
    progress: list[tuple[float, float, int]] = []  # (started at, seconds, elements) per bundle
    with fresh_neo4j() as db:
        log(f"naive baseline on {pop.patients} patients (budget {budget_s:.0f} s)")
        for bundle in bundles:
            if done:
                expected = len(parse_unit([bundle]).batch) / rate(total.facts, total.seconds)
                if total.seconds + expected > budget_s:
                    cut = f"time budget {budget_s:.0f} s"
                    break
            report = load_fhir_naive(db.driver, [bundle])
            progress.append((total.seconds, report.seconds, report.facts))
            total.units += report.units
            total.parsed.update(report.parsed)
            total.write.add(report.write)
            total.seconds += report.seconds
            done += 1
    if cut is None and len(bundles) < len(pop.bundles):
        cut = "--naive-bundles"
    warm = [(s, n) for started, s, n in progress if started >= total.seconds / 3]
    warm_rate = rate(sum(n for _, n in warm), sum(s for s, _ in warm)) if warm else None
    return NaiveResult(pop, Run.of("load_fhir_naive", total), done, cut, warm_rate)


def report(results: Sequence[PopulationResult], naive: NaiveResult) -> None:
    print()
    print("Load throughput (elements = nodes + relationships written)")
    rows: list[list[object]] = []
    for res in results:
        name = f"{res.pop.patients} patients"
        for run in (res.first, res.again):
            rows.append(_row(name, run, f"{len(res.pop.bundles)}"))
        parse_rate = rate(res.first.elements, res.parse_seconds)
        rows.append(
            [
                name,
                "parse only",
                f"{len(res.pop.bundles)}",
                num(res.first.elements),
                f"{res.parse_seconds:.1f}",
                num(parse_rate),
                "",
                "",
                "",
                "",
            ]
        )
    subset = f"{naive.bundles}/{len(naive.pop.bundles)}"
    rows.append(_row(f"{naive.pop.patients} patients", naive.run, subset))
    print_table(
        [
            "population",
            "run",
            "bundles",
            "elements",
            "seconds",
            "elements/s",
            "resources/s",
            "transactions",
            "nodes created",
            "rels created",
        ],
        rows,
    )
    print()
    if naive.cut:
        print(
            f"NOTE: the naive baseline ran on a SUBSET: the first {naive.bundles} of "
            f"{len(naive.pop.bundles)} clinic bundles of the {naive.pop.patients}-patient "
            f"population ({num(naive.run.elements)} elements, {num(naive.run.resources)} "
            f"resources; stopped by {naive.cut}). Rates are compared, not totals."
        )
        print(
            f"      the full population would take it about "
            f"{_duration(_matching(results, naive).first.elements / naive.run.elements_per_s)}."
        )
    if naive.warm_rate is not None:
        warm_ratio = _matching(results, naive).first.elements_per_s / naive.warm_rate
        print(
            f"naive once warm (bundles started after the first third of its run): "
            f"{num(naive.warm_rate)} elements/s, ratio {warm_ratio:.0f}x"
        )
    reloaded_clean = all(r.again.nodes_created == 0 and r.again.rels_created == 0 for r in results)
    print(
        "re-load created nothing (idempotent)"
        if reloaded_clean
        else "WARNING: the re-load created nodes or relationships: loading is NOT idempotent"
    )
    base = _matching(results, naive).first
    ratio = base.elements_per_s / naive.run.elements_per_s
    for res in results:
        run = res.first
        line = (
            f"load {res.pop.patients} patients: {num(run.elements)} elements in "
            f"{run.seconds:.1f} s = {num(run.elements_per_s)}/s"
        )
        if res.pop.patients == naive.pop.patients:
            scope = f" on {naive.bundles} of {len(naive.pop.bundles)} bundles" if naive.cut else ""
            line += f"; naive {num(naive.run.elements_per_s)}/s{scope}; ratio {ratio:.0f}x"
        print(line)


def _row(population_name: str, run: Run, bundles: str) -> list[object]:
    return [
        population_name,
        run.label,
        bundles,
        num(run.elements),
        f"{run.seconds:.1f}",
        num(run.elements_per_s),
        num(run.resources_per_s),
        num(run.transactions),
        num(run.nodes_created),
        num(run.rels_created),
    ]


def _matching(results: Sequence[PopulationResult], naive: NaiveResult) -> PopulationResult:
    return next(r for r in results if r.pop.patients == naive.pop.patients)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--patients",
        type=int,
        nargs="+",
        default=[100],
        help="population sizes (default: 100). Generation is cached; the first 1000-patient "
        "run spends ~12 min in Synthea on 2 cores (~2.5 min for 100)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Synthea seed")
    parser.add_argument(
        "--naive-patients",
        type=int,
        default=None,
        help="population for the naive baseline (default: the smallest of --patients)",
    )
    parser.add_argument(
        "--naive-budget",
        type=float,
        default=150.0,
        help="seconds the naive baseline may write for; it stops before the first bundle that "
        "would not fit and reports the subset it ran on (default: 150)",
    )
    parser.add_argument(
        "--naive-bundles",
        type=int,
        default=None,
        help="load at most the first K bundles with the naive loader (default: no limit)",
    )
    parser.add_argument("--batch-size", type=int, default=5000, help="load_fhir batch size")
    args = parser.parse_args(argv)

    naive_patients = args.naive_patients or min(args.patients)
    sizes = sorted({*args.patients, naive_patients})
    pops = {n: population(n, args.seed) for n in sizes}
    results = [bench_population(pops[n], args.batch_size) for n in sizes]
    naive = bench_naive(pops[naive_patients], args.naive_budget, args.naive_bundles)
    report(results, naive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
