"""Terminology: load time per code system and operation latency against baselines.

In a fresh Neo4j: every source is parsed and loaded (concepts/s per system), then loaded again
(idempotent re-load). Then, over a sample of ICD-10-CM codes, taking turns per code:

| operation | measured | baseline (same run) |
|---|---|---|
| lookup | ``TerminologyAccess.lookup`` | — |
| subsumes | one Cypher ``IS_A*`` existence check | Python walk of parents, one query per level |
| expand | descendants of a category, first page | — |
| search | full-text index ``concept_terms`` | label scan with ``CONTAINS`` |

    .venv/bin/python bench/bench_terminology.py
    .venv/bin/python bench/bench_terminology.py --codes 300 --sources icd10 icd10cm
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from access.policy import Principal, Role
from access.terminology import TerminologyAccess
from bench.common import fresh_neo4j, log, num, percentile, print_table
from graph import terminology as q
from graph.reader import GraphReader, lucene_query
from terminology.model import ICD10CM
from terminology.sources import SOURCES, parse

SEARCH_TEXTS = [
    "diabetes mellitus",
    "fracture femur",
    "hypertension",
    "сахарный диабет",
    "пневмония",
    "tylenol",
    "hemoglobin blood",
    "asthma",
    "myocardial infarction",
    "chronic kidney disease",
]


def timed(fn: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", nargs="*", default=list(SOURCES))
    parser.add_argument("--codes", type=int, default=200, help="sampled codes per operation")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    principal = Principal("bench", Role.TERMINOLOGIST)

    with fresh_neo4j() as neo:
        access = TerminologyAccess.for_driver(neo.driver, principal)
        rows = []
        for name in args.sources:
            started = time.perf_counter()
            systems = list(parse([name]))
            parse_s = time.perf_counter() - started
            log(f"loading {name}: {sum(len(s) for s in systems):,} concepts")
            load = access.load(systems)
            again = access.load(list(parse([name])))
            for s, s2 in zip(load.systems, again.systems, strict=True):
                created = sum(s2.write.nodes_created.values()) + sum(s2.write.rels_created.values())
                rows.append(
                    [
                        f"{name}: {s.system.rsplit('/', 1)[-1]} {s.version}",
                        num(s.concepts),
                        num(parse_s, 2),
                        num(s.seconds, 1),
                        num(s.concepts / max(s.seconds, 1e-9)),
                        num(s2.seconds, 1),
                        created,
                        len(s.problems),
                    ]
                )
        print("\n## load (per code system version)\n")
        print_table(
            [
                "system",
                "concepts",
                "parse s",
                "write s",
                "concepts/s",
                "re-load s",
                "re-load new",
                "problems",
            ],
            rows,
        )

        if "icd10cm" not in args.sources:
            return
        reader = GraphReader(neo.driver)
        rng = random.Random(args.seed)
        records, _, _ = neo.driver.execute_query(
            "MATCH (c:Concept {system: $s})-[:IS_A]->(p:Concept) "
            "WHERE size(c.code) >= 5 RETURN c.code AS code ORDER BY code",
            s=ICD10CM,
        )
        leaves = [r["code"] for r in records]
        sample = rng.sample(leaves, min(args.codes, len(leaves)))
        timings: dict[str, list[float]] = {
            k: []
            for k in (
                "lookup",
                "subsumes graph",
                "subsumes walk",
                "expand",
                "search ft",
                "search scan",
            )
        }
        log(f"operations over {len(sample)} ICD-10-CM codes")
        for code in sample:
            category = code[:3]
            timings["lookup"].append(timed(access.lookup, ICD10CM, code))
            timings["subsumes graph"].append(timed(q.subsumes, reader, ICD10CM, category, code))
            timings["subsumes walk"].append(
                timed(q.subsumes_by_walk, reader, ICD10CM, category, code)
            )
            timings["expand"].append(timed(access.expand, ICD10CM, category, None, 50, None))
        assert all(q.subsumes_by_walk(reader, ICD10CM, c[:3], c) for c in sample[:20]), (
            "baseline disagrees with the graph"
        )
        for _ in range(max(1, args.codes // len(SEARCH_TEXTS))):
            for text in SEARCH_TEXTS:
                timings["search ft"].append(
                    timed(q.search, reader, lucene_query(text), None, None, 20)
                )
                timings["search scan"].append(timed(q.search_scan, reader, text, None, 20))

        def row(name: str, baseline: str | None) -> list[object]:
            values = timings[name]
            p50, p95 = percentile(values, 50), percentile(values, 95)
            ratio = "—"
            if baseline:
                ratio = f"{percentile(timings[baseline], 50) / p50:.1f}x"
            return [name, len(values), num(p50, 2), num(p95, 2), baseline or "—", ratio]

        print("\n## operations (ms)\n")
        print_table(
            ["operation", "n", "p50", "p95", "baseline", "baseline p50 / p50"],
            [
                row("lookup", None),
                row("subsumes graph", "subsumes walk"),
                row("subsumes walk", None),
                row("expand", None),
                row("search ft", "search scan"),
                row("search scan", None),
            ],
        )


if __name__ == "__main__":
    main()
