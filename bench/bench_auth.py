"""Authorisation overhead on the virtual-EHR query: the same FULL_RECORD with and without
consent enforcement and audit, in the same run.

One fresh Neo4j is loaded with a population; a quarter of the sampled persons get a consent
restriction (mental health hidden from everyone), so the filtering really runs. FULL_RECORD
(resolvers/examples/full_record.graphql) is executed in process through the schema four ways,
taking turns per person so drift affects them alike:

* ``baseline``: the guard off (no consent read, no filtering, no audit) — what the query cost
  before issue 7;
* ``consent``: consent read and every fact filtered, no audit;
* ``consent + audit``: the production path (one audit transaction per request);
* ``HTTP, JWT``: the production path over HTTP with a signed practitioner token.

    .venv/bin/python bench/bench_auth.py
    .venv/bin/python bench/bench_auth.py --patients 40 --persons 20 --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx2
import neo4j
import strawberry

from access.policy import Principal, Role
from access.tokens import Authenticator
from app.pipeline import load_fhir
from app.server import create_app
from app.settings import Neo4jSettings, Settings
from bench.bench_vehr import FULL_RECORD, _latency_row, _ms, interleaved, timed
from bench.common import DEFAULT_SEED, fresh_neo4j, log, percentile, population, print_table, serve
from graph import consent as store
from graph.connection import Driver
from resolvers.context import Context
from resolvers.schema import build_schema


def run(
    runner: asyncio.Runner,
    schema: strawberry.Schema,
    driver: Driver,
    uid: str,
    *,
    enforce: bool,
    audit: bool,
) -> int:
    principal = Principal("bench-dr", Role.CLINICIAN, organisation="mis:bench")
    context = Context.for_principal(driver, principal, enforce=enforce, audit=audit)
    result = runner.run(
        schema.execute(FULL_RECORD, variable_values={"id": uid}, context_value=context)
    )
    if result.errors or (result.data or {})["patient"]["__typename"] != "Patient":
        raise RuntimeError(f"FULL_RECORD failed for {uid}: {result.errors}")
    return context.access.round_trips


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=100, help="population (default: 100)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Synthea seed")
    parser.add_argument("--persons", type=int, default=30, help="persons sampled (default: 30)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per person (default: 5)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up runs per path")
    args = parser.parse_args(argv)

    pop = population(args.patients, args.seed)
    with tempfile.TemporaryDirectory(prefix="medshadow-bench-") as tmp, fresh_neo4j() as db:
        log(f"loading {args.patients} patients")
        load = load_fhir(db.driver, [pop.domains], quarantine_dir=Path(tmp) / "quarantine")
        if not load.ok:
            raise SystemExit(f"load was not clean: {load.quarantined} quarantined")
        rows, _, _ = db.driver.execute_query(
            "MATCH (p:Person) RETURN p.uid AS uid ORDER BY uid", routing_=neo4j.RoutingControl.READ
        )
        uids = [str(r["uid"]) for r in rows]
        sample = random.Random(args.seed).sample(uids, min(args.persons, len(uids)))
        restricted = sample[: max(1, len(sample) // 4)]
        for uid in restricted:
            store.write_consent(
                db.driver,
                {
                    "person": uid,
                    "kind": "deny",
                    "granteeType": "everyone",
                    "grantee": "*",
                    "categories": ["mental-health"],
                    "excluded": [],
                    "purposes": ["treatment"],
                },
                by="bench",
            )
        settings = Settings(
            neo4j=Neo4jSettings(uri=db.uri),
            data_dir=Path(tmp) / "data",
            _env_file=None,  # type: ignore[call-arg]
        )
        schema = build_schema()
        trips: dict[str, set[int]] = {"baseline": set(), "consent": set(), "consent + audit": set()}
        app = create_app(settings, driver=db.driver)
        auth: Authenticator = app.state.auth
        token = auth.issue(subject="bench-dr", role="practitioner", organisation="mis:bench")
        with (
            asyncio.Runner() as runner,
            serve(app) as url,
            httpx2.Client(base_url=url, timeout=120) as client,
        ):
            headers = {"Authorization": f"Bearer {token}"}

            def path(enforce: bool, audit: bool, name: str) -> Callable[[str], object]:
                def go(uid: str) -> None:
                    trips[name].add(
                        run(runner, schema, db.driver, uid, enforce=enforce, audit=audit)
                    )

                return go

            def http(uid: str) -> None:
                r = client.post(
                    "/graphql",
                    json={"query": FULL_RECORD, "variables": {"id": uid}},
                    headers=headers,
                )
                r.raise_for_status()
                if r.json()["data"]["patient"]["__typename"] != "Patient":
                    raise RuntimeError(r.text)

            paths = {
                "baseline": path(False, False, "baseline"),
                "consent": path(True, False, "consent"),
                "consent + audit": path(True, True, "consent + audit"),
                "HTTP, JWT, consent + audit": http,
            }
            log(f"{args.warmup} warm-up runs per path")
            for fn in paths.values():
                timed(fn, [sample[i % len(sample)] for i in range(args.warmup)], 1)
            log(f"{len(sample)} persons x {args.reps} reps, the paths interleaved")
            seconds = interleaved(paths, sample, dict.fromkeys(paths, args.reps))
            events, _, _ = db.driver.execute_query("MATCH (e:AuditEvent) RETURN count(e) AS n")

    print()
    print(
        f"authorisation overhead on FULL_RECORD: {args.patients} patients, {len(sample)} persons "
        f"({len(restricted)} with mental health restricted) x {args.reps} reps, in process unless "
        "named"
    )
    print_table(
        ["path", "requests", "p50 ms", "p95 ms", "max ms"],
        [_latency_row(name, s) for name, s in seconds.items()],
    )
    base50 = percentile(seconds["baseline"], 50)
    base95 = percentile(seconds["baseline"], 95)
    print()
    for name in ("consent", "consent + audit"):
        p50, p95 = percentile(seconds[name], 50), percentile(seconds[name], 95)
        print(
            f"{name}: p50 {_ms(p50)} ms vs baseline {_ms(base50)} ms ({p50 / base50:.2f}x, "
            f"{_signed_ms(p50 - base50)} ms); p95 {p95 / base95:.2f}x; round trips "
            f"{sorted(trips[name])} vs {sorted(trips['baseline'])}"
        )
    # Paired per person: p50 alone mixes small and large records, and on a 2-core machine the
    # CPU-bound requests of a few hundred samples move it by tens of ms; each person's own
    # median against their own baseline does not.
    print()
    groups = {
        "all persons": sample,
        "restricted (mental health hidden)": restricted,
        "unrestricted": [u for u in sample if u not in restricted],
    }
    mine = {name: per_person(times, sample) for name, times in seconds.items()}
    paired = []
    for name in paths:
        if name == "baseline":
            continue
        row: list[object] = [name]
        for group in groups.values():
            ratios = [mine[name][u] / mine["baseline"][u] for u in group]
            extra = [mine[name][u] - mine["baseline"][u] for u in group]
            row.append(
                f"{percentile(ratios, 50):.2f}x ({_signed_ms(percentile(extra, 50))} ms)"
                if group
                else "-"
            )
        paired.append(row)
    print("median over persons of each person's median vs their own baseline median:")
    print_table(["path", *groups], paired)
    print(f"audit events written during the run: {events[0]['n']}")
    return 0


def _signed_ms(seconds: float) -> str:
    return ("+" if seconds >= 0 else "") + _ms(seconds)


def per_person(times: Sequence[float], uids: Sequence[str]) -> dict[str, float]:
    """Each person's median seconds (``interleaved`` visits the uids in order, rep by rep)."""
    by_uid: dict[str, list[float]] = {u: [] for u in uids}
    for i, t in enumerate(times):
        by_uid[uids[i % len(uids)]].append(t)
    return {u: percentile(ts, 50) for u, ts in by_uid.items()}


if __name__ == "__main__":
    sys.exit(main())
