"""Research export: time and what k-anonymity costs, against the same export at k = 1 (no
generalisation, no suppression) in the same run.

One fresh Neo4j is loaded with a population; every person gets a research consent; the export
(OMOP CSV + FHIR NDJSON) runs at k = 1, 2, 5, 10.

    .venv/bin/python bench/bench_research.py
    .venv/bin/python bench/bench_research.py --patients 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import neo4j

from app.pipeline import load_fhir
from bench.common import DEFAULT_SEED, fresh_neo4j, log, population, print_table
from graph.consent import write_consent
from research.export import export


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=100, help="population (default: 100)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Synthea seed")
    args = parser.parse_args(argv)
    pop = population(args.patients, args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="medshadow-bench-") as tmp, fresh_neo4j() as db:
        log(f"loading {args.patients} patients")
        load = load_fhir(db.driver, [pop.domains], quarantine_dir=Path(tmp) / "quarantine")
        if not load.ok:
            raise SystemExit("load was not clean")
        persons, _, _ = db.driver.execute_query(
            "MATCH (p:Person) RETURN p.uid AS uid", routing_=neo4j.RoutingControl.READ
        )
        for r in persons:
            write_consent(
                db.driver,
                {"person": r["uid"], "kind": "permit", "granteeType": "research",
                 "grantee": "*", "categories": ["all"], "excluded": [],
                 "purposes": ["research"]},
                by="bench",
            )  # fmt: skip
        base = None
        for k in (1, 2, 5, 10):
            started = time.perf_counter()
            report = export(db.driver, Path(tmp) / f"k{k}", k=k)
            seconds = time.perf_counter() - started
            base = base or seconds
            rows.append([
                k, report.consenting, report.exported, report.suppressed, report.k_achieved,
                report.classes, ", ".join(f"{a}={n}" for a, n in report.levels.items()),
                report.facts_released, f"{seconds:.2f}", f"{report.exported / seconds:.1f}",
                f"{seconds / base:.2f}x",
            ])  # fmt: skip
    print()
    print(f"research export (OMOP + FHIR), {args.patients} patients, all with a research consent")
    print_table(
        ["k", "consenting", "exported", "suppressed", "k achieved", "classes", "levels",
         "facts", "seconds", "persons/s", "vs k=1"],
        rows,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
