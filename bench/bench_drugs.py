"""Drug safety: list-check latency, review of every patient, knowledge load.

Three parts, each with its baseline measured in the same run (one fresh Neo4j, the cached
``--patients`` Synthea population loaded, the ANSM thesaurus loaded):

* **load** - ``DrugSafety.load`` (parse the thesaurus out of the wheel, write 1,278 concepts and
  1,584 interactions); baseline: the same load again, which writes nothing (idempotence).
* **check** - lists of 5, 10 and 20 drugs drawn (seeded) from the ingredients the population's
  clinics actually prescribe, topped up from a pool of commonly co-prescribed generics; per size
  ``--reps`` checks, p50/p95: in process (``DrugSafety.check_names``) and over HTTP (GraphQL
  ``interactions``, the real app under uvicorn). Baseline: the pairwise way list checkers work,
  one graph lookup per drug pair (n(n-1)/2 queries) on the same lists.
* **review** - ``DrugSafety.review`` of every person (reconciled list of every domain, checks,
  context from the shadow): total seconds, per-person p50/p95, items and findings. Baseline: the
  same reviews without patient context (the shadow read it needs).

    .venv/bin/python bench/bench_drugs.py
    .venv/bin/python bench/bench_drugs.py --patients 40 --reps 100
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import httpx
import neo4j

from app.pipeline import load_fhir
from app.server import create_app
from app.settings import ApiSettings, Neo4jSettings, Settings, ShadowSettings
from bench.common import (
    DEFAULT_SEED,
    fresh_neo4j,
    log,
    num,
    percentile,
    population,
    print_table,
    serve,
)
from drugs import checks as ck
from drugs.knowledge import ANSM_SYSTEM
from drugs.service import DrugSafety
from graph.drugs import interactions_among
from shadow.service import ShadowService

#: Generics often prescribed together, to reach 20 distinct drugs when a clinic list is short.
_POOL_TEXT = (
    "warfarin, aspirin, clopidogrel, ibuprofen, naproxen, simvastatin, atorvastatin, "
    "clarithromycin, amiodarone, digoxin, metoprolol, bisoprolol, lisinopril, ramipril, "
    "losartan, spironolactone, furosemide, hydrochlorothiazide, amlodipine, diltiazem, "
    "verapamil, metformin, gliclazide, insulin, sertraline, citalopram, fluoxetine, tramadol, "
    "codeine, morphine, omeprazole, levothyroxine, allopurinol, colchicine, fluconazole, "
    "ciprofloxacin, methotrexate, lithium, quetiapine, haloperidol, carbamazepine, "
    "valproic acid, phenytoin, prednisone, theophylline"
)
POOL = tuple(_POOL_TEXT.split(", "))

PRESCRIBED = """
MATCH (:Person)<-[:RECORD_OF]-(:Patient)<-[:ABOUT]-(m:MedicationRequest)-[:CODED_AS]->(k:Concept)
RETURN DISTINCT k.display AS display
"""


def _lists(
    service: DrugSafety, driver: neo4j.Driver, sizes: Sequence[int], reps: int, seed: int
) -> tuple[dict[int, list[list[str]]], int]:
    displays = [r["display"] for r in driver.execute_query(PRESCRIBED)[0] if r["display"]]
    prescribed = sorted({i.name for d in displays for i in service.dictionary.ingredients(d)})
    names = [*prescribed, *(p for p in POOL if p not in prescribed)]
    rng = random.Random(seed)
    log(f"{len(prescribed)} ingredients prescribed in the population; pool {len(names)}")
    return {n: [rng.sample(names, n) for _ in range(reps)] for n in sizes}, len(prescribed)


def _pairwise(service: DrugSafety, names: Sequence[str]) -> int:
    """The baseline: resolve each drug, then one lookup per pair."""
    items, _ = service.items_for(names)
    index = service.index()
    found = 0
    for a, b in combinations(items, 2):
        rows = interactions_among(service.driver, ANSM_SYSTEM, ck.anchors_of([a, b], index))
        found += len(ck.pair_interactions([a, b], index, rows))
    return found


QUERY = "query($d: [String!]!) { interactions(drugs: $d) { findings { severity title } } }"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=100, help="population (default: 100)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Synthea and list seed")
    parser.add_argument("--reps", type=int, default=50, help="checks per list size (default 50)")
    parser.add_argument("--sizes", default="5,10,20", help="list sizes (default: 5,10,20)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    pop = population(args.patients, args.seed)
    with tempfile.TemporaryDirectory(prefix="medshadow-bench-") as tmp, fresh_neo4j() as db:
        log(f"loading {args.patients} patients ({len(pop.bundles)} bundles)")
        load = load_fhir(db.driver, [pop.domains], quarantine_dir=Path(tmp) / "quarantine")
        if not load.ok:
            raise SystemExit(f"load was not clean: {load.quarantined} quarantined")
        shadow = ShadowService(db.driver)
        service = DrugSafety(db.driver, shadow=shadow)
        started = time.perf_counter()
        _ = service.dictionary
        dictionary_s = time.perf_counter() - started

        # -- load ------------------------------------------------------------------------
        first = service.load()
        again = service.load()
        print("\n## knowledge load (ANSM thesaurus)\n")
        print_table(
            ["run", "seconds", "nodes created/changed", "interactions"],
            [
                ["first load", num(first.seconds, 2), first.nodes_changed, first.interactions],
                [
                    "reload (baseline)",
                    num(again.seconds, 2),
                    again.nodes_changed,
                    again.interactions,
                ],
            ],
        )
        print(
            f"\nsubstances tied to dictionary ingredients: {first.mapped_to_ingredients} of "
            f"{first.substances + first.others}; drug dictionary built in {dictionary_s:.2f} s"
        )

        # -- check -----------------------------------------------------------------------
        lists, prescribed = _lists(service, db.driver, sizes, args.reps, args.seed)
        for names in lists[sizes[0]][:5]:  # warm-up
            service.check_names(names)
        rows = []
        settings = Settings(
            neo4j=Neo4jSettings(uri=db.uri),
            data_dir=Path(tmp) / "data",
            api=ApiSettings(anonymous_role="clinician"),
            shadow=ShadowSettings(watch=False),
            _env_file=None,  # type: ignore[call-arg]
        )
        with (
            serve(create_app(settings, driver=db.driver)) as base,
            httpx.Client(base_url=base, timeout=60) as http,
        ):
            for names in lists[sizes[0]][:5]:
                http.post("/graphql", json={"query": QUERY, "variables": {"d": names}})
            for n in sizes:
                inproc, over_http, pairwise, findings = [], [], [], []
                for names in lists[n]:
                    t = time.perf_counter()
                    review = service.check_names(names)
                    inproc.append(time.perf_counter() - t)
                    findings.append(len(review.findings))
                    t = time.perf_counter()
                    r = http.post("/graphql", json={"query": QUERY, "variables": {"d": names}})
                    over_http.append(time.perf_counter() - t)
                    if r.status_code != 200 or "errors" in r.json():
                        raise SystemExit(f"GraphQL check failed: {r.text}")
                    t = time.perf_counter()
                    _pairwise(service, names)
                    pairwise.append(time.perf_counter() - t)
                p50 = percentile(inproc, 50)
                rows.append(
                    [
                        n,
                        num(p50 * 1000, 1),
                        num(percentile(inproc, 95) * 1000, 1),
                        num(percentile(over_http, 50) * 1000, 1),
                        num(percentile(over_http, 95) * 1000, 1),
                        num(percentile(pairwise, 50) * 1000, 1),
                        f"{percentile(pairwise, 50) / p50:.1f}x",
                        num(sum(findings) / len(findings), 1),
                    ]
                )
        print(f"\n## check latency ({args.reps} lists per size, {prescribed} prescribed drugs)\n")
        print_table(
            [
                "drugs",
                "p50 ms",
                "p95 ms",
                "GraphQL p50 ms",
                "GraphQL p95 ms",
                "pairwise p50 ms (baseline)",
                "baseline / ours",
                "findings/list",
            ],
            rows,
        )

        # -- review ----------------------------------------------------------------------
        persons = [
            r["uid"] for r in db.driver.execute_query("MATCH (p:Person) RETURN p.uid AS uid")[0]
        ]
        now = int(time.time())
        per_person: list[float] = []
        items: list[int] = []
        priorities: Counter[str] = Counter()
        with_items = 0
        started = time.perf_counter()
        for person in persons:
            t = time.perf_counter()
            review = service.review(person, now)
            per_person.append(time.perf_counter() - t)
            items.append(review.active_count)
            with_items += bool(review.items)
            priorities.update(f.priority for f in review.findings)
        total = time.perf_counter() - started
        bare = DrugSafety(db.driver, dictionary=service.dictionary)  # no shadow: no context
        started = time.perf_counter()
        for person in persons:
            bare.review(person, now)
        total_bare = time.perf_counter() - started
        print(
            f"\n## review of every person ({len(persons)} persons, {with_items} with medicines)\n"
        )
        print_table(
            ["run", "total s", "persons/s", "p50 ms", "p95 ms"],
            [
                [
                    "with patient context",
                    num(total, 2),
                    num(len(persons) / total, 1),
                    num(percentile(per_person, 50) * 1000, 1),
                    num(percentile(per_person, 95) * 1000, 1),
                ],
                [
                    "without context (baseline)",
                    num(total_bare, 2),
                    num(len(persons) / total_bare, 1),
                    "",
                    "",
                ],
            ],
        )
        print(
            f"\nactive medicines per person: mean {sum(items) / len(items):.1f}, max {max(items)}; "
            f"findings: interrupt {priorities['interrupt']}, review {priorities['review']}, "
            f"info {priorities['info']}; context cost {total / total_bare:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
