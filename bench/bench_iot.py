"""Device readings: streaming ingest throughput and 6-month trend latency, against baselines.

One person of a small split Synthea population gets ``--days`` (default 183) of generated
minute-level wearable data plus spot readings (``loaders/iot_gen.py``). In a fresh Neo4j, with
the real app under uvicorn on a free port:

* **ingest** - every reading POSTed to ``/ingest/readings`` as NDJSON, ``--batch`` lines per
  request (the server writes each request in one transaction); the same body again (all
  unchanged: the idempotent path); the baseline of **one request per reading** on the first
  ``--single`` readings, into another vendor's series; and the naive model's write (one node per
  reading, batched ``UNWIND MERGE``) of the heart-rate readings, which the trend baseline reads.
* **trend** - the daily heart-rate trend over the whole period: from the hourly buckets'
  aggregates (``ReadingAccess.trend``), the same through GraphQL over HTTP
  (``Patient.readingTrend``), and the baseline aggregating the raw per-reading nodes; p50/p95
  over ``--reps`` runs each, taking turns. The three must return the same points.

    .venv/bin/python bench/bench_iot.py
    .venv/bin/python bench/bench_iot.py --days 30 --reps 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx2

from access.policy import Principal, Role
from access.readings import ReadingAccess
from app.readings import load_readings
from app.server import create_app
from app.settings import Neo4jSettings, Settings
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
from graph.readings import (
    NAIVE_INDEX,
    NAIVE_TREND,
    trend_params,
    trend_points,
    write_readings,
    write_readings_naive,
)
from loaders.iot_gen import generate_iot
from loaders.readings import Reading, parse_readings_file

# A stand-in for the master patient index in this throwaway database: the IoT record's Person.
LINK_PERSON = (
    "MATCH (r:Patient {uid: $record}) MERGE (p:Person {uid: $person}) "
    "SET p.name = r.name MERGE (r)-[:RECORD_OF]->(p)"
)

TOKENS = {"t": "device", "c": "clinician"}

TREND_QUERY = """
query($id: ID!, $since: DateTime!, $until: DateTime!) { patient(id: $id) { ... on Patient {
  readingTrend(metric: "heart_rate", since: $since, until: $until, every: DAY) {
    start count min max mean stddev } } } }
"""


def post_batches(
    client: httpx2.Client, lines: Sequence[bytes], vendor: str, batch: int
) -> tuple[float, dict[str, int]]:
    """POST ``lines`` ``batch`` at a time; seconds and the summed response counts."""
    totals = {"accepted": 0, "rejected": 0, "inserted": 0, "unchanged": 0}
    started = time.perf_counter()
    for i in range(0, len(lines), batch):
        body = b"\n".join(lines[i : i + batch]) + b"\n"
        response = client.post("/ingest/readings", params={"vendor": vendor}, content=body)
        response.raise_for_status()
        data = response.json()
        for key in totals:
            totals[key] += int(data[key])
    return time.perf_counter() - started, totals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=5, help="split population (default 5)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed")
    parser.add_argument("--days", type=int, default=183, help="days of data (default 183)")
    parser.add_argument("--batch", type=int, default=1000, help="readings per request")
    parser.add_argument("--single", type=int, default=2000, help="readings sent one per request")
    parser.add_argument("--reps", type=int, default=20, help="trend queries per path")
    args = parser.parse_args(argv)

    pop = population(args.patients, args.seed)
    with tempfile.TemporaryDirectory(prefix="medshadow-bench-iot-") as tmp_name:
        tmp = Path(tmp_name)
        out = tmp / "iot"
        started = time.perf_counter()
        gen = generate_iot(
            pop.domains, out, seed=args.seed, days=args.days, fraction=1.0, max_persons=1,
            vendor="bench",
        )  # fmt: skip
        log(f"generated {num(gen.readings)} readings over {args.days} days in "
            f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        lines = (out / "readings.ndjson").read_bytes().splitlines()
        readings = [r for _, r in parse_readings_file(out / "readings.ndjson", vendor="bench")]
        hr = [r for r in readings if isinstance(r, Reading) and r.metric.key == "heart_rate"]
        account = hr[0].account_id
        since, until = min(r.time for r in hr), max(r.time for r in hr) + 1

        with fresh_neo4j() as db:
            driver = db.driver
            for vendor in ("bench", "single", "direct"):
                report = load_readings(
                    driver,
                    [out / "accounts.ndjson", out / "devices.ndjson"],
                    vendor=vendor,
                    quarantine_dir=tmp / "q",
                )
                if not report.ok:
                    raise SystemExit(f"accounts did not load cleanly: {report.reasons}")
            person = "bench-person"
            driver.execute_query(LINK_PERSON, record=f"iot:bench/Patient/{account}", person=person)
            settings = Settings(
                neo4j=Neo4jSettings(uri=db.uri),
                data_dir=tmp / "data",
                _env_file=None,  # type: ignore[call-arg]
            )
            api = settings.api.model_copy(update={"tokens": TOKENS})
            settings = settings.model_copy(update={"api": api})
            app = create_app(settings, driver=driver)
            with serve(app) as base:
                headers = {"Authorization": "Bearer t", "Content-Type": "application/x-ndjson"}
                with httpx2.Client(base_url=base, headers=headers, timeout=120) as client:
                    log(f"POST {num(len(lines))} readings, {args.batch} per request")
                    batched_s, batched = post_batches(client, lines, "bench", args.batch)
                    if batched["inserted"] != len(lines):
                        raise SystemExit(f"ingest was not clean: {batched}")
                    log("the same again (idempotent)")
                    again_s, again = post_batches(client, lines, "bench", args.batch)
                    if again["unchanged"] != len(lines):
                        raise SystemExit(f"re-ingest changed data: {again}")
                    single = lines[: args.single]
                    log(f"baseline: {num(len(single))} readings, one request each")
                    single_s, one = post_batches(client, single, "single", 1)
                direct = [
                    r
                    for _, r in parse_readings_file(out / "readings.ndjson", vendor="direct")
                    if isinstance(r, Reading)
                ]
                log(f"{num(len(direct))} readings straight into buckets (no HTTP), 5000 per tx")
                started = time.perf_counter()
                for i in range(0, len(direct), 5000):
                    write_readings(driver, direct[i : i + 5000])
                direct_s = time.perf_counter() - started
                log(f"baseline: {num(len(hr))} heart-rate readings as one node each")
                driver.execute_query(NAIVE_INDEX)
                driver.execute_query("CALL db.awaitIndexes(300)")
                started = time.perf_counter()
                for i in range(0, len(hr), 5000):
                    write_readings_naive(driver, hr[i : i + 5000])
                naive_s = time.perf_counter() - started

                # -- trend latency --------------------------------------------------------
                access = ReadingAccess.for_driver(driver, Principal("bench", Role.CLINICIAN))
                series = hr[0].series_uid
                gql_client = httpx2.Client(
                    base_url=base, headers={"Authorization": "Bearer c"}, timeout=120
                )
                variables = {
                    "id": person,
                    "since": datetime.fromtimestamp(since, UTC).isoformat(),
                    "until": datetime.fromtimestamp(until, UTC).isoformat(),
                }

                def buckets() -> object:
                    return access.trend([series], since, until, "DAY")

                def graphql() -> object:
                    payload = {"query": TREND_QUERY, "variables": variables}
                    r = gql_client.post("/graphql", json=payload)
                    body = r.json()
                    if body.get("errors"):
                        raise RuntimeError(body["errors"])
                    return body["data"]["patient"]["readingTrend"]

                params = trend_params([series], since, until, "DAY")
                naive_params = {k: params[k] for k in ("lo", "hi", "width", "origin")}

                def naive() -> object:
                    records, _, _ = driver.execute_query(NAIVE_TREND, series=series, **naive_params)
                    return trend_points(records)

                a, b, c = buckets(), graphql(), naive()
                agree = [(p.start, p.count) for p in a] == [(p.start, p.count) for p in c]  # type: ignore[attr-defined]
                agree = agree and len(b) == len(a)  # type: ignore[arg-type]
                paths: dict[str, Callable[[], object]] = {
                    "buckets (ReadingAccess.trend)": buckets,
                    "GraphQL readingTrend over HTTP": graphql,
                    "baseline: raw per-reading nodes": naive,
                }
                times: dict[str, list[float]] = {name: [] for name in paths}
                for _ in range(args.reps):
                    for name, fn in paths.items():
                        started = time.perf_counter()
                        fn()
                        times[name].append(time.perf_counter() - started)
                gql_client.close()
                points = len(a)  # type: ignore[arg-type]

    print(f"\nIoT ingest: {num(len(lines))} readings ({args.days} days, one person), "
          f"{num(len(hr))} of them minute-level heart rate\n")  # fmt: skip
    rate_batched = len(lines) / batched_s
    rate_single = len(single) / single_s
    ingest_rows = [
        (f"HTTP stream, {args.batch}/request", len(lines), batched_s),
        ("HTTP re-send (all unchanged)", len(lines), again_s),
        ("buckets direct (write_readings)", len(lines), direct_s),
        ("baseline: HTTP 1 reading/request", len(single), single_s),
        ("baseline: node per reading (direct)", len(hr), naive_s),
    ]
    print_table(
        ["path", "readings", "seconds", "readings/s"],
        [[name, num(n), f"{s:.1f}", num(n / s)] for name, n, s in ingest_rows],
    )
    print(f"\nratio streamed / one-per-request: {rate_batched / rate_single:,.1f}x "
          f"(accepted {num(one['accepted'])} of {num(len(single))} single requests)")  # fmt: skip
    print(f"\ndaily heart-rate trend over {args.days} days: {points} points, "
          f"{args.reps} runs per path, results agree: {'yes' if agree else 'NO'}\n")  # fmt: skip
    rows = [
        [name, f"{percentile(ts, 50) * 1000:.1f}", f"{percentile(ts, 95) * 1000:.1f}"]
        for name, ts in times.items()
    ]
    print_table(["path", "p50 ms", "p95 ms"], rows)
    slow = times["baseline: raw per-reading nodes"]
    fast = times["buckets (ReadingAccess.trend)"]
    print(f"\nratio baseline / buckets: p50 {percentile(slow, 50) / percentile(fast, 50):,.1f}x, "
          f"p95 {percentile(slow, 95) / percentile(fast, 95):,.1f}x")  # fmt: skip
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
