"""Portal and community loads: the batched channel pipeline against one transaction per entry.

For a population: generate portal accounts and community posts for a fraction of its persons
(``loaders.portal_gen`` / ``loaders.social_gen``), then in a fresh Neo4j time ``load_portal`` and
``load_social`` (graph elements/s), a second idempotent load (must create nothing), and the
baseline: every account entry / post written in its own transaction (the way an API that
wrote each entry as it arrived would), in another fresh Neo4j. Prints the ratio.

    .venv/bin/python bench/bench_channels.py                  # 100 patients, fraction 1.0
    .venv/bin/python bench/bench_channels.py --patients 1000 --fraction 0.5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from app.channels import ChannelLoadReport, load_portal, load_social
from bench.common import DEFAULT_SEED, fresh_neo4j, log, num, population, print_table, rate
from graph.connection import Driver
from graph.writer import write_batch
from loaders import portal, social
from loaders.fhir import ParsedUnit
from loaders.portal_gen import generate_portal
from loaders.social_gen import generate_social
from ontology.records import GraphBatch


def _naive(driver: Driver, units: Sequence[ParsedUnit]) -> tuple[int, float]:
    """Baseline: each fact (with its links) in its own transactions, nodes before rels."""
    started = time.perf_counter()
    elements = 0
    for unit in units:
        for node in list(unit.batch.node_rows()):
            one = GraphBatch()
            one.nodes[(node.label, node.uid)] = node
            write_batch(driver, one)
            elements += 1
        for key, rel in list(unit.batch.rels.items()):
            one = GraphBatch()
            one.rels[key] = rel
            write_batch(driver, one)
            elements += 1
    return elements, time.perf_counter() - started


def _both(driver: Driver, portal_dir: Path, social_dir: Path, q: Path) -> ChannelLoadReport:
    p = load_portal(driver, [portal_dir], quarantine_dir=q)
    s = load_social(driver, [social_dir], quarantine_dir=q)
    if not (p.ok and s.ok):
        raise RuntimeError(f"load not clean: {p.reasons} {s.reasons}")
    p.write.add(s.write)
    p.parsed.update(s.parsed)
    p.seconds += s.seconds
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)

    pop = population(args.patients, args.seed)
    with tempfile.TemporaryDirectory(prefix="medshadow-bench-channels-") as tmp:
        out = Path(tmp)
        started = time.perf_counter()
        pg = generate_portal(pop.domains, out / "portal", seed=args.seed, fraction=args.fraction)
        sg = generate_social(pop.domains, out / "social", seed=args.seed, fraction=args.fraction)
        gen_seconds = time.perf_counter() - started
        log(f"generated {pg.accounts} accounts ({pg.entries} entries), {sg.posts} posts")
        units = [
            *portal.parse_paths([out / "portal"]),
            *social.parse_paths([out / "social"]),
        ]
        with fresh_neo4j() as db:
            first = _both(db.driver, out / "portal", out / "social", out / "q")
            again = _both(db.driver, out / "portal", out / "social", out / "q")
        with fresh_neo4j() as db:
            naive_elements, naive_seconds = _naive(db.driver, units)

    items = sum(first.parsed.values())
    created_again = sum(again.write.nodes_created.values()) + sum(again.write.rels_created.values())
    print(
        f"channels: {args.patients} patients, fraction {args.fraction}: {pg.accounts} portal "
        f"accounts with {pg.entries} entries, {sg.authors} community authors with {sg.posts} "
        f"posts (generated in {gen_seconds:.1f} s)"
    )
    print_table(
        ["run", "elements", "items", "seconds", "elements/s", "created"],
        [
            [
                "batched load",
                num(first.facts),
                num(items),
                f"{first.seconds:.2f}",
                num(rate(first.facts, first.seconds)),
                num(
                    sum(first.write.nodes_created.values()) + sum(first.write.rels_created.values())
                ),
            ],
            [
                "re-load",
                num(again.facts),
                num(items),
                f"{again.seconds:.2f}",
                num(rate(again.facts, again.seconds)),
                num(created_again),
            ],
            [
                "one tx per element",
                num(naive_elements),
                num(items),
                f"{naive_seconds:.2f}",
                num(rate(naive_elements, naive_seconds)),
                "",
            ],
        ],
    )
    ratio = rate(first.facts, first.seconds) / rate(naive_elements, naive_seconds)
    print(f"batched / one-tx-per-element throughput: {ratio:.1f}x")
    if created_again:
        print("ERROR: the re-load created graph elements (not idempotent)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
