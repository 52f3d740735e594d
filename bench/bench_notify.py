"""Change-feed latency: from the write (``emit_changes``) to a websocket subscriber and to a
webhook receiver, against a client polling the outbox itself, all in the same run.

A fresh Neo4j holds a small two-clinic ecosystem (``--persons`` persons, each with a record in
clinic A and one in clinic B, written with the graph writer; the links are test data here).
The real app (``create_app``, default ``NotifySettings``) is served by uvicorn in a thread; a
websockets client subscribes over graphql-transport-ws, a webhook of clinic A points at a
local HTTP receiver, and a baseline client polls ``events_after`` every ``--poll-ms``. The
writer then emits ``--changes`` changes to clinic B records at a steady pace, twice:

* **woken**: after each emit the writer calls ``Notifier.wake()``, as an in-process writer (a
  GraphQL mutation) does;
* **polled**: it does not, as an out-of-process writer (the CLI loader) cannot; the dispatcher
  finds the events on its own poll (``poll_interval_s``, default 0.5 s).

Latency is from just before ``emit_changes`` to the arrival (message read by the client /
request read by the receiver / the poll that returned the event).

    .venv/bin/python bench/bench_notify.py
    .venv/bin/python bench/bench_notify.py --changes 500 --pace-ms 20 --poll-ms 50
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
from websockets.sync.client import connect

from app.notify import Notifier
from app.server import create_app
from app.settings import ApiSettings, Neo4jSettings, Settings
from bench.common import fresh_neo4j, log, num, percentile, print_table, serve
from graph import outbox
from graph.connection import Driver
from graph.embedded import free_port
from graph.writer import write_batch
from ontology.model import DomainKind, Label, RelType
from ontology.records import GraphBatch

CLINIC_A, CLINIC_B = "mis:bench-clinic-a", "mis:bench-clinic-b"
SUBSCRIBE = "subscription { changes { id cursor personId kinds } }"
REGISTER = """
mutation($domain: ID!, $url: String!) {
  registerWebhook(domain: $domain, url: $url) { webhook { id } secret }
}
"""
TOKEN = "bench-integrator"


def build_ecosystem(driver: Driver, persons: int) -> list[str]:
    """Persons with a record in each clinic; returns the clinic-B record uids."""
    batch = GraphBatch()
    for domain in (CLINIC_A, CLINIC_B):
        batch.node(Label.DOMAIN, domain, {"name": domain, "kind": DomainKind.MIS.value})
    for i in range(persons):
        person = f"person:bench-{i}"
        batch.node(Label.PERSON, person, {"name": f"Bench {i}"})
        for domain in (CLINIC_A, CLINIC_B):
            record = f"{domain}/Patient/{i}"
            batch.node(Label.PATIENT, record, {"recordId": str(i), "sourceDomain": domain})
            batch.rel(RelType.IN_DOMAIN, (Label.PATIENT, record), (Label.DOMAIN, domain))
            batch.rel(RelType.RECORD_OF, (Label.PATIENT, record), (Label.PERSON, person))
    write_batch(driver, batch)
    return [f"{CLINIC_B}/Patient/{i}" for i in range(persons)]


@dataclass
class Arrivals:
    """Arrival time (perf_counter) per event id, for one observer; thread-safe."""

    times: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, event_id: str) -> None:
        now = time.perf_counter()
        with self.lock:
            self.times.setdefault(event_id, now)

    def has_all(self, ids: Sequence[str]) -> bool:
        with self.lock:
            return all(i in self.times for i in ids)


@contextmanager
def receiver(arrivals: Arrivals) -> Iterator[str]:
    """A local webhook endpoint recording when each event's request was read."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            arrivals.add(self.headers["X-Medshadow-Event"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, name="bench-receiver", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook"
    finally:
        server.shutdown()
        server.server_close()


def subscriber(
    ws_url: str, arrivals: Arrivals, ready: threading.Event, stop: threading.Event
) -> None:
    with connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
        ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {TOKEN}"}})
        )
        if json.loads(ws.recv(timeout=10))["type"] != "connection_ack":
            raise RuntimeError("no connection_ack")
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
        ready.set()
        while not stop.is_set():
            try:
                message = json.loads(ws.recv(timeout=0.2))
            except TimeoutError:
                continue
            if message["type"] != "next" or "errors" in message["payload"]:
                raise RuntimeError(f"subscription failed: {message}")
            arrivals.add(message["payload"]["data"]["changes"]["id"])


def poller(driver: Driver, every_s: float, arrivals: Arrivals, stop: threading.Event) -> None:
    """The baseline: a client reading the outbox itself every ``every_s``."""
    cursor = outbox.feed_head(driver)
    while not stop.is_set():
        run = outbox.contiguous(outbox.events_after(driver, cursor, limit=1000), cursor)
        for event in run:
            arrivals.add(event.uid)
        if run:
            cursor = run[-1].seq
        time.sleep(every_s)


@dataclass
class Pass:
    name: str
    emitted: dict[str, float]  # event id -> time just before its emit_changes
    committed: dict[str, float]  # event id -> time emit_changes returned (committed)
    emit_s: list[float]


def run_pass(
    name: str,
    driver: Driver,
    notifier: Notifier,
    records: Sequence[str],
    changes: int,
    pace_s: float,
    *,
    wake: bool,
    observers: Sequence[Arrivals],
    rng: random.Random,
) -> Pass:
    log(f"{name}: {changes} changes, one every ~{pace_s * 1000:.0f} ms")
    emitted: dict[str, float] = {}
    committed: dict[str, float] = {}
    emit_s: list[float] = []
    for i in range(changes):
        record = records[i % len(records)]
        started = time.perf_counter()
        (event,) = outbox.emit_changes(driver, {record: {"Observation"}}, source=f"bench:{name}")
        done = time.perf_counter()
        emit_s.append(done - started)
        if wake:
            notifier.wake()
        emitted[event.uid] = started
        committed[event.uid] = done
        time.sleep(pace_s * (0.5 + rng.random()))
    ids = list(emitted)
    deadline = time.monotonic() + 120
    while not all(o.has_all(ids) for o in observers):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: not every event arrived within 120 s")
        time.sleep(0.05)
    return Pass(name, emitted, committed, emit_s)


def latencies_ms(p: Pass, arrivals: Arrivals, *, from_commit: bool = False) -> list[float]:
    start = p.committed if from_commit else p.emitted
    return [(arrivals.times[i] - t) * 1000 for i, t in start.items()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--changes", type=int, default=200, help="changes per pass (default 200)")
    parser.add_argument("--persons", type=int, default=50, help="persons (default 50)")
    parser.add_argument("--pace-ms", type=float, default=25, help="mean gap between changes")
    parser.add_argument("--poll-ms", type=float, default=100, help="baseline poll interval")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="medshadow-bench-") as tmp, fresh_neo4j() as db:
        records = build_ecosystem(db.driver, args.persons)
        settings = Settings(
            neo4j=Neo4jSettings(uri=db.uri),
            data_dir=Path(tmp) / "data",
            api=ApiSettings(tokens={TOKEN: "integrator"}),
            _env_file=None,  # type: ignore[call-arg]
        )
        app = create_app(settings, driver=db.driver)
        passes: list[tuple[Pass, dict[str, Arrivals]]] = []
        with serve(app) as url:
            notifier = app.state.notifier
            assert isinstance(notifier, Notifier)
            for wake in (True, False):
                observed = {"subscription": Arrivals(), "webhook": Arrivals(), "poll": Arrivals()}
                stop, ready = threading.Event(), threading.Event()
                with receiver(observed["webhook"]) as hook_url:
                    body = httpx2.post(
                        f"{url}/graphql",
                        json={
                            "query": REGISTER,
                            "variables": {"domain": CLINIC_A, "url": hook_url},
                        },
                        headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=30,
                    ).json()
                    if body.get("errors"):
                        raise RuntimeError(f"registerWebhook failed: {body['errors']}")
                    threads = [
                        threading.Thread(
                            target=subscriber,
                            args=(
                                url.replace("http", "ws") + "/graphql",
                                observed["subscription"],
                                ready,
                                stop,
                            ),
                            daemon=True,
                        ),
                        threading.Thread(
                            target=poller,
                            args=(db.driver, args.poll_ms / 1000, observed["poll"], stop),
                            daemon=True,
                        ),
                    ]
                    for t in threads:
                        t.start()
                    ready.wait(30)
                    while notifier.broker.subscribers == 0:
                        time.sleep(0.05)
                    # warm-up: a few changes nobody measures
                    warm = run_pass(
                        "warm-up",
                        db.driver,
                        notifier,
                        records,
                        10,
                        0.01,
                        wake=True,
                        observers=list(observed.values()),
                        rng=rng,
                    )
                    del warm
                    name = "woken" if wake else "polled"
                    result = run_pass(
                        name,
                        db.driver,
                        notifier,
                        records,
                        args.changes,
                        args.pace_ms / 1000,
                        wake=wake,
                        observers=list(observed.values()),
                        rng=rng,
                    )
                    stop.set()
                    for t in threads:
                        t.join(timeout=10)
                    hook = body["data"]["registerWebhook"]["webhook"]["id"]
                    outbox.deactivate_webhook(db.driver, hook)
                passes.append((result, observed))

    poll_s = settings.notify.poll_interval_s
    print()
    print(
        f"Change-feed latency, emit_changes -> arrival; {args.changes} changes per pass, one every "
        f"~{num(args.pace_ms)} ms; dispatcher poll {num(poll_s * 1000)} ms, baseline poll "
        f"{num(args.poll_ms)} ms"
    )
    rows: list[list[object]] = []
    figures: dict[tuple[str, str], tuple[float, float]] = {}
    for result, observed in passes:
        emit = [s * 1000 for s in result.emit_s]
        rows.append(
            [
                f"emit_changes alone ({result.name})",
                len(emit),
                num(percentile(emit, 50), 1),
                num(percentile(emit, 95), 1),
                num(max(emit), 1),
                "",
                "",
            ]
        )
        for observer, label in (
            ("subscription", "websocket subscription"),
            ("webhook", "webhook delivery"),
            ("poll", f"baseline: poll outbox every {num(args.poll_ms)} ms"),
        ):
            values = latencies_ms(result, observed[observer])
            p50, p95 = percentile(values, 50), percentile(values, 95)
            figures[(result.name, observer)] = (p50, p95)
            after = latencies_ms(result, observed[observer], from_commit=True)
            rows.append(
                [
                    f"{label} ({result.name})",
                    len(values),
                    num(p50, 1),
                    num(p95, 1),
                    num(max(values), 1),
                    num(percentile(after, 50), 1),
                    num(percentile(after, 95), 1),
                ]
            )
    headers = ["path", "events", "p50 ms", "p95 ms", "max ms", "p50 from commit", "p95 from commit"]
    print_table(headers, rows)
    print()
    sub50, sub95 = figures[("woken", "subscription")]
    base50, base95 = figures[("woken", "poll")]
    hook50, hook95 = figures[("woken", "webhook")]
    print(
        f"subscription (woken) p50 {num(sub50, 1)} ms / p95 {num(sub95, 1)} ms vs polling "
        f"every {num(args.poll_ms)} ms p50 {num(base50, 1)} ms / p95 {num(base95, 1)} ms: "
        f"ratio baseline / subscription {base50 / sub50:.1f}x at p50, {base95 / sub95:.1f}x at p95"
    )
    woken = next(result for result, _ in passes if result.name == "woken")
    woken_observed = next(observed for result, observed in passes if result is woken)
    sub_c = percentile(latencies_ms(woken, woken_observed["subscription"], from_commit=True), 50)
    base_c = percentile(latencies_ms(woken, woken_observed["poll"], from_commit=True), 50)
    print(
        f"from commit (emit_changes returned): subscription p50 {num(sub_c, 1)} ms vs polling "
        f"p50 {num(base_c, 1)} ms: ratio {base_c / sub_c:.1f}x"
    )
    print(f"webhook delivery (woken) p50 {num(hook50, 1)} ms / p95 {num(hook95, 1)} ms")
    pol50, pol95 = figures[("polled", "subscription")]
    print(
        f"subscription without a wake-up (out-of-process writer): p50 {num(pol50, 1)} ms / "
        f"p95 {num(pol95, 1)} ms (the dispatcher polls every {num(poll_s * 1000)} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
