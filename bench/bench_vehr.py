"""vEHR read latency: the full one-patient GraphQL query over HTTP against the same Cypher run
directly with the driver.

One fresh Neo4j is loaded with a population and the real app (``create_app``) is served by
uvicorn in a thread. For a sample of persons, FULL_RECORD (as in tests/resolvers/test_vehr.py)
is timed three ways, taking turns per person so drift affects them alike: over HTTP, in process
through the schema (no HTTP), and as the resolvers' own Cypher statements run one after the
other with the driver. The ratio of HTTP to direct Cypher is what GraphQL + HTTP add on top of
the database work.

    .venv/bin/python bench/bench_vehr.py
    .venv/bin/python bench/bench_vehr.py --patients 40 --persons 30 --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import neo4j
import strawberry

from access.policy import Principal, Role
from app.pipeline import load_fhir
from app.server import create_app
from app.settings import REPO_ROOT, Neo4jSettings, Settings
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
from graph import reader as q
from graph.connection import Driver
from graph.reader import ALL_FACTS, FactFilter
from ontology.model import Label
from resolvers.context import Context
from resolvers.schema import build_schema

# Every field kind of one patient's record (the same query the tests run).
FULL_RECORD = (REPO_ROOT / "resolvers" / "examples" / "full_record.graphql").read_text()

#: The fact lists FULL_RECORD asks for without arguments (each one DataLoader, one query).
FULL_RECORD_LABELS = (
    Label.CONDITION,
    Label.MEDICATION_REQUEST,
    Label.ENCOUNTER,
    Label.ALLERGY_INTOLERANCE,
    Label.PROCEDURE,
    Label.IMMUNIZATION,
    Label.DOCUMENT,
)
OBSERVATIONS_FIRST = 500
TIMELINE_FIRST = 50

FACTS_PER_PERSON = """
MATCH (p:Person)
OPTIONAL MATCH (p)<-[:RECORD_OF]-(r:Patient)
OPTIONAL MATCH (r)<-[:ABOUT]-(f)
RETURN p.uid AS uid, count(DISTINCT r) AS records, count(f) AS facts
ORDER BY uid
"""


# --------------------------------------------------------------------------- the three paths


def direct_queries(uid: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The statements the resolvers run for FULL_RECORD, with the parameters they pass.

    Each comes as (name, Cypher, parameters). The resolvers ask for one more row than the page
    (``first + 1``) to know whether a next page exists; so does this.
    """
    uids = [uid]
    statements: list[tuple[str, str, dict[str, Any]]] = [
        ("person", q.PERSONS_BY_UID, {"uids": uids}),
        ("records", q.RECORDS_OF_PERSONS, {"uids": uids}),
    ]
    statements += [
        (label.value, q.facts_query(label, ALL_FACTS), q.fact_params(uids, ALL_FACTS))
        for label in FULL_RECORD_LABELS
    ]
    observations = FactFilter(first=OBSERVATIONS_FIRST + 1)
    statements.append(
        (
            f"Observation (first {OBSERVATIONS_FIRST + 1})",
            q.facts_query(Label.OBSERVATION, observations),
            q.fact_params(uids, observations),
        )
    )
    statements.append(
        (
            f"timeline (first {TIMELINE_FIRST + 1})",
            q.TIMELINE,
            {
                "uids": uids,
                "since": None,
                "until": None,
                "limit": TIMELINE_FIRST + 1,
                "afterDate": None,
                "afterUid": None,
            },
        )
    )
    return statements


def run_direct(
    driver: Driver, uid: str, per_statement: dict[str, list[float]] | None = None
) -> int:
    """Run the statements one after the other; return the number of rows read.

    With ``per_statement``, each statement's seconds are appended under its name.
    """
    rows = 0
    for name, query, params in direct_queries(uid):
        started = time.perf_counter()
        records, _, _ = driver.execute_query(
            neo4j.Query(query),
            params,
            routing_=neo4j.RoutingControl.READ,
        )
        if per_statement is not None:
            per_statement.setdefault(name, []).append(time.perf_counter() - started)
        rows += len(records)
    return rows


@dataclass(frozen=True, slots=True)
class InProcess:
    round_trips: int
    facts: int


def run_in_process(
    runner: asyncio.Runner, schema: strawberry.Schema, driver: Driver, uid: str
) -> InProcess:
    """FULL_RECORD through the schema, as tests/resolvers/test_vehr.py runs it.

    One long-lived event loop (and so one thread pool for the resolvers' ``to_thread``), as
    in the server, rather than a new loop per call.
    """
    context = Context.for_principal(driver, Principal("bench", Role.CLINICIAN))
    result = runner.run(
        schema.execute(FULL_RECORD, variable_values={"id": uid}, context_value=context)
    )
    if result.errors:
        raise RuntimeError(f"FULL_RECORD failed in process: {result.errors}")
    return InProcess(context.access.round_trips, _facts_in(result.data or {}))


def _facts_in(data: dict[str, Any]) -> int:
    """Facts in a FULL_RECORD answer: the fact lists plus the connections' edges."""
    patient = data["patient"]
    total = 0
    for name, value in patient.items():
        if name in {"identifiers", "domains"}:
            continue
        if isinstance(value, list):
            total += len(value)
        elif isinstance(value, dict) and isinstance(value.get("edges"), list):
            total += len(value["edges"])
    return total


def post_full_record(client: httpx2.Client, uid: str) -> tuple[float, int]:
    """One HTTP round trip; returns (seconds, response bytes). Checks the answer after timing."""
    started = time.perf_counter()
    response = client.post("/graphql", json={"query": FULL_RECORD, "variables": {"id": uid}})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    body = response.json()
    if body.get("errors") or body["data"]["patient"]["__typename"] != "Patient":
        raise RuntimeError(f"FULL_RECORD failed over HTTP for {uid}: {body.get('errors')}")
    return elapsed, len(response.content)


def timed(fn: Callable[[str], object], uids: Sequence[str], reps: int) -> list[float]:
    """Seconds per call of ``fn(uid)``, for every uid, ``reps`` times (round-robin)."""
    out: list[float] = []
    for _ in range(reps):
        for uid in uids:
            started = time.perf_counter()
            fn(uid)
            out.append(time.perf_counter() - started)
    return out


def interleaved(
    paths: Mapping[str, Callable[[str], object]], uids: Sequence[str], reps: Mapping[str, int]
) -> dict[str, list[float]]:
    """Seconds per call of each path, ``reps[path]`` times per uid; the paths take turns on
    each uid, so drift (JIT, caches, the machine) affects them alike."""
    out: dict[str, list[float]] = {name: [] for name in paths}
    for rep in range(max(reps.values())):
        for uid in uids:
            for name, fn in paths.items():
                if rep >= reps[name]:
                    continue
                started = time.perf_counter()
                fn(uid)
                out[name].append(time.perf_counter() - started)
    return out


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--patients", type=int, default=100, help="population to load (default: 100)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Synthea seed")
    parser.add_argument("--persons", type=int, default=30, help="persons sampled (default: 30)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per person (default: 5)")
    parser.add_argument(
        "--in-process-reps",
        type=int,
        default=1,
        help="repetitions per person of the in-process path, an extra diagnostic (default: 1)",
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="warm-up requests per path (default: 5)"
    )
    args = parser.parse_args(argv)

    pop = population(args.patients, args.seed)
    with tempfile.TemporaryDirectory(prefix="medshadow-bench-") as tmp, fresh_neo4j() as db:
        log(f"loading {args.patients} patients ({len(pop.bundles)} bundles)")
        load = load_fhir(db.driver, [pop.domains], quarantine_dir=Path(tmp) / "quarantine")
        if not load.ok:
            raise SystemExit(f"load was not clean: {load.quarantined} quarantined")
        records, _, _ = db.driver.execute_query(
            FACTS_PER_PERSON, routing_=neo4j.RoutingControl.READ
        )
        facts = {str(r["uid"]): int(r["facts"]) for r in records}
        domains = {str(r["uid"]): int(r["records"]) for r in records}
        uids = sorted(facts)
        sample = random.Random(args.seed).sample(uids, min(args.persons, len(uids)))
        largest = max(uids, key=lambda u: (facts[u], u))
        warm = [sample[i % len(sample)] for i in range(args.warmup)]

        schema = build_schema()
        settings = Settings(
            neo4j=Neo4jSettings(uri=db.uri),
            data_dir=Path(tmp) / "data",
            _env_file=None,  # type: ignore[call-arg]
        )
        sizes: list[int] = []
        trips: set[int] = set()
        per_statement: dict[str, list[float]] = {}
        measuring = False
        with (
            asyncio.Runner() as runner,
            serve(create_app(settings, driver=db.driver)) as url,
            httpx2.Client(base_url=url, timeout=120) as client,
        ):

            def in_process(uid: str) -> InProcess:
                result = run_in_process(runner, schema, db.driver, uid)
                trips.add(result.round_trips)
                return result

            def http(uid: str) -> None:
                sizes.append(post_full_record(client, uid)[1])

            def direct(uid: str) -> None:
                run_direct(db.driver, uid, per_statement if measuring else None)

            largest_returned = in_process(largest).facts
            paths = {"http": http, "in_process": in_process, "direct": direct}
            path_reps = {"http": args.reps, "in_process": args.in_process_reps, "direct": args.reps}
            log(f"{args.warmup} warm-up requests per path")
            for fn in paths.values():
                timed(fn, warm, 1)
            sizes.clear()
            measuring = True
            log(f"{len(sample)} persons x {args.reps} reps, the paths interleaved")
            sample_s = interleaved(paths, sample, path_reps)
            mean_kib = sum(sizes) / len(sizes) / 1024
            measuring = False
            largest_s = interleaved(paths, [largest], dict.fromkeys(paths, args.reps))

    sample_facts = sorted(facts[u] for u in sample)
    print()
    print(
        f"vEHR FULL_RECORD, {args.patients} patients loaded ({num(load.facts)} elements, "
        f"{len(uids)} persons); sample of {len(sample)} persons x {args.reps} reps "
        f"(in process: x {args.in_process_reps}) after {args.warmup} warm-up requests per path"
    )
    print(
        f"sample records: median {num(percentile(sample_facts, 50))} facts, max "
        f"{num(sample_facts[-1])}; largest record in the database: {num(facts[largest])} facts "
        f"in {domains[largest]} domains ({num(largest_returned)} facts returned by "
        f"FULL_RECORD, which pages observations at {OBSERVATIONS_FIRST} and timeline at "
        f"{TIMELINE_FIRST})"
    )
    print(
        f"Cypher round trips per vEHR query: {_one_or_range(trips)} "
        f"(direct path runs {len(direct_queries(largest))} statements); "
        f"mean response {num(mean_kib, 1)} KiB over the sample"
    )
    print()
    http_s, cypher_s = sample_s["http"], sample_s["direct"]
    rows = [
        _latency_row("GraphQL over HTTP", http_s),
        _latency_row("GraphQL in process (no HTTP)", sample_s["in_process"]),
        _latency_row("direct Cypher (sequential)", cypher_s),
        _latency_row("GraphQL over HTTP, largest record", largest_s["http"]),
        _latency_row("GraphQL in process, largest record", largest_s["in_process"]),
        _latency_row("direct Cypher, largest record", largest_s["direct"]),
    ]
    print_table(["path", "requests", "p50 ms", "p95 ms", "max ms"], rows)
    print()
    print("direct Cypher per statement, over the sample (each statement is one round trip)")
    print_table(
        ["statement", "runs", "p50 ms", "p95 ms", "share of sum of p50"],
        _statement_rows(per_statement),
    )
    print()
    ratio50 = percentile(http_s, 50) / percentile(cypher_s, 50)
    ratio95 = percentile(http_s, 95) / percentile(cypher_s, 95)
    print(
        f"vEHR p50 {_ms(percentile(http_s, 50))} ms / p95 {_ms(percentile(http_s, 95))} ms over "
        f"HTTP; direct Cypher p50 {_ms(percentile(cypher_s, 50))} ms / p95 "
        f"{_ms(percentile(cypher_s, 95))} ms; GraphQL+HTTP overhead {ratio50:.2f}x at p50, "
        f"{ratio95:.2f}x at p95"
    )
    return 0


def _latency_row(name: str, seconds: Sequence[float]) -> list[object]:
    return [
        name,
        len(seconds),
        _ms(percentile(seconds, 50)),
        _ms(percentile(seconds, 95)),
        _ms(max(seconds)),
    ]


def _statement_rows(per_statement: Mapping[str, Sequence[float]]) -> list[list[object]]:
    medians = {name: percentile(times, 50) for name, times in per_statement.items()}
    total = sum(medians.values()) or 1.0
    return [
        [
            name,
            len(times),
            _ms(medians[name]),
            _ms(percentile(times, 95)),
            f"{100 * medians[name] / total:.0f}%",
        ]
        for name, times in per_statement.items()
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _one_or_range(values: set[int]) -> str:
    return str(min(values)) if len(values) == 1 else f"{min(values)}-{max(values)}"


if __name__ == "__main__":
    sys.exit(main())
