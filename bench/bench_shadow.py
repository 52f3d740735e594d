"""The digital shadow: live alerting cost, alert latency, full recomputation, alert quality.

Four parts (``--parts``, all by default), each with its baseline measured in the same run:

* **ingest** - the real app under uvicorn, ``--readings`` device readings (the newest of a
  one-day IoT export of every person of the population, so every account streams) POSTed to
  ``/ingest/readings`` in ``--batch`` line requests, once with ``shadow.watch`` off (the
  baseline) and once with it on, on the same database state (one fresh Neo4j for all parts;
  :func:`reset` deletes what a run wrote). With the watcher on, the clock stops at the end of
  the watcher's last pass, once the dispatcher has published the outbox head read after the
  last POST and the watcher has stayed still for :data:`QUIET_S`. The shadow clock is the
  export's end, so alerts are judged on the readings' own time; the silent-device sweep is
  pushed past the run (it is periodic work, not caused by ingest).
* **latency** - a graphql-transport-ws client subscribes to ``alerts(minSeverity: "low")`` and
  to the plain ``changes`` feed on one connection; each of ``--trials`` POSTs sends one SpO2
  reading of 85 % at wall-clock time for a distinct living person without an open alert
  (NEWS2 scale 1 scores <= 91 % as 3: the single-parameter medium alert). Latency is from just
  before the POST to the subscriber reading the message; the change event of the same POST is
  the baseline.
* **recompute** - the cached ``--patients`` population plus a ``--days`` IoT export of
  ``--fraction`` of its persons is the template; per person, exactly what the shadow reads is
  copied with new uids (see :func:`replicate`) until there are ``--persons`` Person nodes. Then
  ``ShadowService.recompute_all`` as of the export's end with the default batch size: seconds,
  persons/s, peak RSS before and after. Baseline: ``batch_size=1`` against the default on the
  same ``--sample`` persons, same state; tracemalloc peak over ``--trace`` persons in a
  separate run.
* **quality** - the template's ground truth (``ground_truth_iot.json``) replayed with
  ``ShadowService.read`` + ``evaluate`` (nothing stored): per episode, as of its end, does an
  alert of the matching kind fire; per monitored person, ``--evals`` seeded random times at least
  2 h from their episodes, how many non-silent alerts fire; per permanently stopped device, as of
  the stop + 3 days, does a silent-device alert name it. Baseline: a naive rule firing on any
  single reading beyond the same bound within the same window, at the same time points.

    .venv/bin/python bench/bench_shadow.py
    .venv/bin/python bench/bench_shadow.py --parts recompute --persons 2000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import orjson
from starlette.applications import Starlette
from websockets.sync.client import connect

from app.notify import Notifier
from app.pipeline import load_fhir
from app.readings import load_readings
from app.server import create_app
from app.settings import ApiSettings, Neo4jSettings, Settings, ShadowSettings
from app.shadow_watch import ShadowWatcher
from bench.bench_iot import post_batches
from bench.common import (
    DEFAULT_SEED,
    Population,
    fresh_neo4j,
    log,
    num,
    percentile,
    population,
    print_table,
    rate,
    serve,
)
from graph import outbox
from graph.connection import Driver
from graph.readings import BUCKET_SECONDS
from loaders.iot_gen import IOT_TRUTH_NAME, generate_iot
from loaders.readings import METRICS as READING_METRICS
from loaders.readings import device_uid, record_uid
from ontology.model import Label, RelType
from shadow import alerts as alert_rules
from shadow.engine import SMOKING_STATUS
from shadow.metrics import METRICS
from shadow.service import MIN_LOOKBACK_S, PER_CODE, RecomputeReport, ShadowService

PARTS = ("ingest", "latency", "recompute", "quality")
VENDOR = "bench"
TOKENS = {"d": "device", "c": "clinician"}
SUBSCRIBE_ALERTS = 'subscription { alerts(minSeverity: "low") { id personId rule severity at } }'
SUBSCRIBE_CHANGES = "subscription { changes { id cursor personId kinds } }"

#: Alert rules that count as catching an episode of each kind of the generator.
CATCHES = {
    "desaturation": frozenset({"news2", "spo2-falling"}),
    "tachycardia": frozenset({"tachycardia", "news2"}),
    "hypertensive_spike": frozenset({"severe-hypertension"}),
    "hypoglycaemia": frozenset({"hypoglycaemia-level-1", "hypoglycaemia-level-2"}),
}
#: Time points for false alerts keep this far from any episode of the person.
EPISODE_MARGIN_S = 2 * 3600
#: A permanently stopped device is checked this long after its last reading.
SILENCE_CHECK_S = 3 * 86_400

# Naive single-reading rules: the bound the real rule uses (for SpO2 the NEWS2 scale 1 band
# scoring 3, <= 91 %), within the same window, but one reading is enough.
NAIVE_RULES: list[dict[str, Any]] = [
    {"id": "naive-spo2", "metric": "spo2", "below": 91, "inclusive": True, "window": 60},
    {"id": "naive-heart-rate", "metric": "heart_rate", "above": 130, "window": 10},
    {"id": "naive-bp", "metric": "bp_systolic", "above": 180, "inclusive": True, "window": 30},
    {"id": "naive-glucose", "metric": "glucose", "below": 70, "window": 20},
]
NAIVE_CATCHES = {
    "desaturation": "naive-spo2",
    "tachycardia": "naive-heart-rate",
    "hypertensive_spike": "naive-bp",
    "hypoglycaemia": "naive-glucose",
}


def naive_rules() -> list[alert_rules.AlertRule]:
    out: list[alert_rules.AlertRule] = []
    for spec in NAIVE_RULES:
        bounds = {k: spec[k] for k in ("below", "above", "inclusive") if k in spec}
        out.append(
            alert_rules.ThresholdRule(
                kind="threshold",
                id=spec["id"],
                title=spec["id"],
                reference="benchmark baseline",
                metric=spec["metric"],
                sustained={"readings": 1, "within_minutes": spec["window"]},  # type: ignore[arg-type]
                severity="medium",
                **bounds,
            )
        )
    return out


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Export:
    """One generated IoT export and its ground truth."""

    root: Path
    truth: dict[str, Any]
    start: int
    end: int

    @property
    def accounts(self) -> list[str]:
        return sorted(self.truth["accounts"])

    @property
    def meta_paths(self) -> list[Path]:
        return [self.root / "accounts.ndjson", self.root / "devices.ndjson"]


def make_export(pop: Population, out: Path, *, seed: int, days: int, fraction: float) -> Export:
    started = time.perf_counter()
    report = generate_iot(pop.domains, out, seed=seed, days=days, fraction=fraction, vendor=VENDOR)
    truth = orjson.loads((out / IOT_TRUTH_NAME).read_bytes())
    log(
        f"IoT export: {report.accounts} accounts, {num(report.readings)} readings over {days} "
        f"days, {report.episodes} episodes, {report.silences} silences "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return Export(out, truth, _epoch(truth["start"]), _epoch(truth["end"]))


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def load_base(driver: Driver, pop: Population, export: Export, tmp: Path) -> None:
    """The population's clinic records and the vendor's accounts and devices, linked to persons
    by the master patient index; no readings yet."""
    started = time.perf_counter()
    fhir = load_fhir(driver, [pop.domains], quarantine_dir=tmp / "q-fhir")
    iot = load_readings(driver, export.meta_paths, vendor=VENDOR, quarantine_dir=tmp / "q-iot")
    if not iot.ok:
        raise SystemExit(f"the IoT accounts did not load cleanly: {dict(iot.reasons)}")
    log(
        f"loaded {fhir.files} clinic bundles and {iot.accounts} accounts in "
        f"{time.perf_counter() - started:.0f} s"
    )


#: What a run of the live parts leaves behind: its readings and the shadow's outputs. Deleting
#: them returns the database to the state after :func:`load_base` (the outbox keeps its events).
RESET_LABELS = (
    Label.READING_BUCKET,
    Label.READING_SERIES,
    Label.ALERT,
    Label.RISK_ASSESSMENT,
    Label.DATA_REQUEST,
)


def reset(driver: Driver) -> None:
    with driver.session() as session:
        for label in RESET_LABELS:
            session.run(
                f"MATCH (n:`{label}`) CALL (n) {{ DETACH DELETE n }} IN TRANSACTIONS OF 10000 ROWS"
            ).consume()


def person_of_accounts(
    driver: Driver, accounts: Sequence[str], *, living: bool = False
) -> dict[str, str]:
    """Account -> the Person its record is linked to (``living``: only persons no record says
    deceased, as the shadow raises no alert for the dead)."""
    records = {record_uid(VENDOR, a): a for a in accounts}
    rows, _, _ = driver.execute_query(
        "UNWIND $uids AS uid MATCH (:Patient {uid: uid})-[:RECORD_OF]->(p:Person) "
        "RETURN uid, p.uid AS person, "
        "any(r IN [(p)<-[:RECORD_OF]-(x:Patient) | x] WHERE r.deceased IS NOT NULL) AS dead",
        uids=sorted(records),
    )
    return {records[r["uid"]]: r["person"] for r in rows if not (living and r["dead"])}


def app_settings(uri: str, tmp: Path, shadow: ShadowSettings) -> Settings:
    return Settings(
        neo4j=Neo4jSettings(uri=uri),
        data_dir=tmp / "data",
        api=ApiSettings(tokens=TOKENS),
        shadow=shadow,
        _env_file=None,  # type: ignore[call-arg]
    )


# --------------------------------------------------------------------------- 1. ingest


@dataclass(slots=True)
class IngestRun:
    watch: bool
    readings: int
    post_s: float
    total_s: float
    report: RecomputeReport | None = None
    passes_persons: int = 0


#: How long the watcher must stay still (no pass finishing, nothing dirty) to count as idle:
#: longer than any pass takes here (a pass of a few hundred persons takes seconds). Its dirty
#: set is emptied when a pass starts, so an empty set alone does not mean no pass is running.
QUIET_S = 30.0


def wait_for_watcher(app: Starlette, driver: Driver, posted: float, timeout_s: float) -> float:
    """Monotonic time at which the watcher finished evaluating everything the POSTs changed.

    First the dispatcher must have published everything up to the outbox head read now (so
    the watcher has heard of every data event). Then the watcher must stay idle for
    :data:`QUIET_S` with no further pass finishing; the answer is the end of its last pass
    (not the end of the wait).
    """
    watcher = app.state.shadow_watcher
    notifier = app.state.notifier
    assert isinstance(watcher, ShadowWatcher)
    assert isinstance(notifier, Notifier)
    head = outbox.feed_head(driver)
    deadline = time.monotonic() + timeout_s
    while (notifier.cursor or 0) < head:
        if time.monotonic() > deadline:
            raise RuntimeError("the change feed did not reach the outbox head")
        time.sleep(0.01)
    # idle (nothing dirty, no pass running) with no pass finishing for QUIET_S: events still
    # in flight between the feed and the watcher would have marked someone dirty by then
    passes, still_since = watcher.passes, time.monotonic()
    while True:
        if watcher.passes != passes or not watcher.idle:
            passes, still_since = watcher.passes, time.monotonic()
        last = watcher.last_pass
        quiet = time.monotonic() - still_since > QUIET_S
        if quiet and last is not None and last >= posted:
            return last
        if time.monotonic() > deadline:
            raise RuntimeError("the shadow watcher did not become idle")
        time.sleep(0.01)


def ingest_run(
    app: Starlette, base: str, driver: Driver, lines: Sequence[bytes], batch: int, watch: bool
) -> IngestRun:
    headers = {"Authorization": "Bearer d", "Content-Type": "application/x-ndjson"}
    log(f"ingest, watch {'on' if watch else 'off'}: {num(len(lines))} readings, {batch}/request")
    with httpx2.Client(base_url=base, headers=headers, timeout=300) as client:
        started = time.monotonic()
        _, totals = post_batches(client, lines, VENDOR, batch)
        posted = time.monotonic()
    if totals["inserted"] != len(lines):
        raise SystemExit(f"ingest was not clean: {totals}")
    done = posted
    report: RecomputeReport | None = None
    if watch:
        watcher = app.state.shadow_watcher
        assert isinstance(watcher, ShadowWatcher)
        during = watcher.report.persons
        done = wait_for_watcher(app, driver, posted, timeout_s=3600)
        report = watcher.report
        log(
            f"watcher: {during} person recomputations while posting, {report.persons} in all; "
            f"last pass {done - posted:+.1f} s after the last POST returned"
        )
    return IngestRun(watch, len(lines), posted - started, done - started, report)


def stream_lines(export: Export, count: int) -> list[bytes]:
    """The newest ``count`` readings of the export in time order (every account streams)."""
    rows = (export.root / "readings.ndjson").read_bytes().splitlines()
    rows.sort(key=lambda line: orjson.loads(line)["time"])
    return rows[-count:]


# --------------------------------------------------------------------------- 2. latency


@dataclass
class Arrivals:
    """First arrival (perf_counter) per (subscription, person); thread-safe."""

    times: dict[tuple[str, str], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list[str] = field(default_factory=list)

    def add(self, sub: str, person: str) -> None:
        now = time.perf_counter()
        with self.lock:
            self.times.setdefault((sub, person), now)

    def has(self, sub: str, person: str) -> bool:
        with self.lock:
            return (sub, person) in self.times


def subscriber(
    ws_url: str, arrivals: Arrivals, ready: threading.Event, stop: threading.Event
) -> None:
    """One graphql-transport-ws connection with two subscriptions: ``a`` (alerts), ``c``
    (changes that carry data, not the shadow's own Alert/DataRequest events)."""
    with connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
        ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer c"}}))
        if json.loads(ws.recv(timeout=10))["type"] != "connection_ack":
            raise RuntimeError("no connection_ack")
        for sid, query in (("a", SUBSCRIBE_ALERTS), ("c", SUBSCRIBE_CHANGES)):
            ws.send(json.dumps({"id": sid, "type": "subscribe", "payload": {"query": query}}))
        ready.set()
        while not stop.is_set():
            try:
                message = json.loads(ws.recv(timeout=0.2))
            except TimeoutError:
                continue
            if message["type"] != "next" or "errors" in message["payload"]:
                arrivals.errors.append(str(message))
                continue
            data = message["payload"]["data"]
            if message["id"] == "a":
                arrivals.add("a", data["alerts"]["personId"])
            elif data["changes"]["personId"] and set(data["changes"]["kinds"]) - {
                "Alert",
                "DataRequest",
            }:
                arrivals.add("c", data["changes"]["personId"])


@dataclass(slots=True)
class LatencyResult:
    alert_ms: list[float]
    change_ms: list[float]
    post_ms: list[float]
    missed: int


def spo2_line(account: str, at: datetime) -> bytes:
    return orjson.dumps(
        {
            "account": account,
            "device": f"{account}-ox",
            "metric": "spo2",
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": 85,
            "unit": READING_METRICS["spo2"].unit,
        }
    )


def latency_run(
    app: Starlette, base: str, persons: dict[str, str], trials: int, warmup: int
) -> LatencyResult:
    notifier = app.state.notifier
    assert isinstance(notifier, Notifier)
    arrivals, ready, stop = Arrivals(), threading.Event(), threading.Event()
    thread = threading.Thread(
        target=subscriber,
        args=(base.replace("http", "ws") + "/graphql", arrivals, ready, stop),
        name="bench-subscriber",
        daemon=True,
    )
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the subscriber did not connect")
    # the watcher's own subscription and ours; the warm-up trials prove both paths deliver
    deadline = time.monotonic() + 30
    while notifier.broker.subscribers < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the subscriptions did not register: {arrivals.errors[:3]}")
        time.sleep(0.02)
    time.sleep(0.5)
    accounts = sorted(persons, key=lambda a: persons[a])
    seen: set[str] = set()
    distinct = [a for a in accounts if not (persons[a] in seen or seen.add(persons[a]))]  # type: ignore[func-returns-value]
    if len(distinct) < trials + warmup:
        log(f"only {len(distinct)} distinct persons: {len(distinct) - warmup} trials")
    result = LatencyResult([], [], [], 0)
    headers = {"Authorization": "Bearer d", "Content-Type": "application/x-ndjson"}
    with httpx2.Client(base_url=base, headers=headers, timeout=60) as client:
        for i, account in enumerate(distinct[: trials + warmup]):
            person = persons[account]
            body = spo2_line(account, datetime.now(UTC)) + b"\n"
            sent = time.perf_counter()
            response = client.post("/ingest/readings", params={"vendor": VENDOR}, content=body)
            returned = time.perf_counter()
            response.raise_for_status()
            if response.json()["inserted"] != 1:
                raise RuntimeError(f"the reading was not inserted: {response.json()}")
            until = time.monotonic() + 30
            while not (arrivals.has("a", person) and arrivals.has("c", person)):
                if time.monotonic() > until:
                    break
                time.sleep(0.002)
            if i < warmup:
                log(f"warm-up {i + 1}: alert {arrivals.has('a', person)}, "
                    f"change {arrivals.has('c', person)}")  # fmt: skip
                continue
            if not (arrivals.has("a", person) and arrivals.has("c", person)):
                result.missed += 1
                continue
            result.alert_ms.append((arrivals.times[("a", person)] - sent) * 1000)
            result.change_ms.append((arrivals.times[("c", person)] - sent) * 1000)
            result.post_ms.append((returned - sent) * 1000)
            time.sleep(0.05)
    stop.set()
    thread.join(timeout=10)
    if arrivals.errors:
        log(f"subscription errors: {arrivals.errors[:3]}")
    return result


# --------------------------------------------------------------------------- 3. replication

_P, _R, _DOM, _CON = Label.PERSON, Label.PATIENT, Label.DOMAIN, Label.CONCEPT
_OBS, _COND, _MED = Label.OBSERVATION, Label.CONDITION, Label.MEDICATION_REQUEST
_S, _B, _DEV = Label.READING_SERIES, Label.READING_BUCKET, Label.DEVICE
_RECORD_OF, _IN_DOMAIN, _ABOUT = RelType.RECORD_OF, RelType.IN_DOMAIN, RelType.ABOUT
_CODED, _MEASURED = RelType.CODED_AS, RelType.MEASURED_BY

TEMPLATE_PERSONS = f"""
MATCH (p:`{_P}`)<-[:`{_RECORD_OF}`]-(r:`{_R}`)-[:`{_IN_DOMAIN}`]->(d:`{_DOM}`)
RETURN p.uid AS pid, properties(p) AS props,
       collect({{uid: r.uid, props: properties(r), domain: d.uid}}) AS records
ORDER BY pid
"""

# The facts the shadow's reads (graph/shadow.py) can return as of $asOf, per record: the
# newest $perCode observations per metric code and the smoking status, the conditions active
# then, the active prescriptions.
TEMPLATE_OBSERVATIONS = f"""
UNWIND $records AS rid
MATCH (:`{_R}` {{uid: rid}})<-[:`{_ABOUT}`]-(o:`{_OBS}`)-[:`{_CODED}`]->(k:`{_CON}`)
WHERE any(c IN $codes WHERE c = k.uid) AND o.date <= $asOf
  AND (o.value IS NOT NULL OR o.valueCode IS NOT NULL)
WITH rid, k.uid AS code, o ORDER BY o.date DESC
WITH rid, code, collect(o)[..$perCode] AS os
UNWIND os AS o
RETURN DISTINCT rid, properties(o) AS props, [(o)-[:`{_CODED}`]->(c:`{_CON}`) | c.uid] AS codes
"""

TEMPLATE_CONDITIONS = f"""
UNWIND $records AS rid
MATCH (:`{_R}` {{uid: rid}})<-[:`{_ABOUT}`]-(c:`{_COND}`)
WHERE (c.date IS NULL OR c.date <= $asOf) AND (c.end IS NULL OR c.end > $asOf)
RETURN rid, properties(c) AS props, [(c)-[:`{_CODED}`]->(k:`{_CON}`) | k.uid] AS codes
"""

TEMPLATE_MEDICATIONS = f"""
UNWIND $records AS rid
MATCH (:`{_R}` {{uid: rid}})<-[:`{_ABOUT}`]-(m:`{_MED}`)
WHERE m.status = 'active' AND (m.date IS NULL OR m.date <= $asOf)
RETURN rid, properties(m) AS props, [(m)-[:`{_CODED}`]->(k:`{_CON}`) | k.uid] AS codes
"""

TEMPLATE_SERIES = f"""
UNWIND $records AS rid
MATCH (:`{_R}` {{uid: rid}})<-[:`{_ABOUT}`]-(s:`{_S}`)-[:`{_MEASURED}`]->(d:`{_DEV}`)
RETURN rid, properties(s) AS props, properties(d) AS device
"""

# Only the hours the shadow reads: from the device lookback before $asOf on.
TEMPLATE_BUCKETS = f"""
UNWIND $series AS sid
MATCH (b:`{_B}`) WHERE b.series = sid AND b.start >= $lo AND b.start <= $hi
RETURN properties(b) AS props
"""

COPY_PERSONS = f"""
UNWIND $rows AS row
CREATE (p:`{_P}`) SET p = row.props
WITH p, row
UNWIND row.records AS rec
MATCH (d:`{_DOM}` {{uid: rec.domain}})
CREATE (r:`{_R}`) SET r = rec.props
CREATE (r)-[:`{_RECORD_OF}`]->(p)
CREATE (r)-[:`{_IN_DOMAIN}`]->(d)
"""


def _copy_facts(label: Label) -> str:
    """A fact node ABOUT its (copied) record, CODED_AS the template's own Concept nodes."""
    return f"""
UNWIND $rows AS row
MATCH (r:`{_R}` {{uid: row.record}})
CREATE (f:`{label}`) SET f = row.props
CREATE (f)-[:`{_ABOUT}`]->(r)
WITH f, row
UNWIND row.codes AS code
MATCH (k:`{_CON}` {{uid: code}})
CREATE (f)-[:`{_CODED}`]->(k)
"""


COPY_FACTS = {label: _copy_facts(label) for label in (_OBS, _COND, _MED)}

COPY_SERIES = f"""
UNWIND $rows AS row
MATCH (r:`{_R}` {{uid: row.record}})
MERGE (d:`{_DEV}` {{uid: row.device.uid}}) ON CREATE SET d = row.device
CREATE (s:`{_S}`) SET s = row.props
CREATE (s)-[:`{_ABOUT}`]->(r)
CREATE (s)-[:`{_MEASURED}`]->(d)
"""

COPY_BUCKETS = f"UNWIND $rows AS row CREATE (b:`{_B}`) SET b = row"


@dataclass(slots=True)
class Template:
    persons: list[dict[str, Any]]
    facts: dict[Label, list[dict[str, Any]]]
    series: list[dict[str, Any]]
    buckets: list[dict[str, Any]]

    def size(self) -> str:
        facts = ", ".join(f"{num(len(v))} {k.value}" for k, v in self.facts.items())
        records = sum(len(p["records"]) for p in self.persons)
        return (
            f"{len(self.persons)} persons, {records} records, {facts}, "
            f"{len(self.series)} reading series, {num(len(self.buckets))} buckets"
        )


def read_template(driver: Driver, as_of: int) -> Template:
    at = datetime.fromtimestamp(as_of, UTC)
    persons = [dict(r) for r in driver.execute_query(TEMPLATE_PERSONS).records]
    records = [rec["uid"] for p in persons for rec in p["records"]]
    codes = sorted({u for m in METRICS.values() for u in m.concept_uids} | {SMOKING_STATUS})
    params: dict[str, Any] = {"records": records, "asOf": at, "codes": codes, "perCode": PER_CODE}
    facts: dict[Label, list[dict[str, Any]]] = {}
    for label, query in (
        (_OBS, TEMPLATE_OBSERVATIONS),
        (_COND, TEMPLATE_CONDITIONS),
        (_MED, TEMPLATE_MEDICATIONS),
    ):
        facts[label] = [dict(r) for r in driver.execute_query(query, params).records]
    series = [dict(r) for r in driver.execute_query(TEMPLATE_SERIES, params).records]
    lookback = max(alert_rules.lookback_s(alert_rules.default_rules()), MIN_LOOKBACK_S)
    lo = as_of - lookback
    buckets = [
        dict(r["props"])
        for r in driver.execute_query(
            TEMPLATE_BUCKETS,
            {
                "series": [s["props"]["uid"] for s in series],
                "lo": lo - lo % BUCKET_SECONDS,
                "hi": as_of,
            },
        ).records
    ]
    return Template(persons, facts, series, buckets)


def _batched(driver: Driver, query: str, rows: Sequence[dict[str, Any]], size: int) -> None:
    for i in range(0, len(rows), size):
        driver.execute_query(query, rows=list(rows[i : i + size]))


def replicate(driver: Driver, template: Template, target: int, batch: int) -> int:
    """Copy the template's persons with new uids (suffix ``~c<k>``) until there are ``target``
    Person nodes; returns the number of copies made.

    Per person exactly what the shadow reads: the Person, its Patient records IN_DOMAIN the
    same Domain nodes, the facts the reads return (CODED_AS the same Concept nodes), its reading
    series with their devices and the buckets within the device lookback. Written in batches
    of ``batch`` rows with ``UNWIND ... CREATE`` (parameters only)."""
    persons = template.persons
    missing = target - len(persons)
    made = 0
    k = 0
    while made < missing:
        k += 1
        take = persons[: min(len(persons), missing - made)]
        suffix = f"~c{k}"
        chosen = {rec["uid"] for p in take for rec in p["records"]}
        _batched(
            driver,
            COPY_PERSONS,
            [
                {
                    "props": {**p["props"], "uid": p["pid"] + suffix},
                    "records": [
                        {
                            "domain": rec["domain"],
                            "props": {**rec["props"], "uid": rec["uid"] + suffix},
                        }
                        for rec in p["records"]
                    ],
                }
                for p in take
            ],
            max(1, batch // 10),
        )
        for label, rows in template.facts.items():
            _batched(
                driver,
                COPY_FACTS[label],
                [
                    {
                        "record": f["rid"] + suffix,
                        "props": {**f["props"], "uid": f["props"]["uid"] + suffix},
                        "codes": f["codes"],
                    }
                    for f in rows
                    if f["rid"] in chosen
                ],
                batch,
            )
        copied: set[str] = set()
        series_rows = []
        for s in template.series:
            if s["rid"] not in chosen:
                continue
            sid = s["props"]["uid"]
            copied.add(sid)
            props = {**s["props"], "uid": sid + suffix}
            if "record" in props:
                props["record"] = s["rid"] + suffix
            series_rows.append(
                {
                    "record": s["rid"] + suffix,
                    "props": props,
                    "device": {**s["device"], "uid": s["device"]["uid"] + suffix},
                }
            )
        _batched(driver, COPY_SERIES, series_rows, batch)
        _batched(
            driver,
            COPY_BUCKETS,
            [
                {
                    **b,
                    "uid": f"{b['series']}{suffix}/{b['start']}",
                    "series": b["series"] + suffix,
                }
                for b in template.buckets
                if b["series"] in copied
            ],
            batch,
        )
        made += len(take)
        if k % 10 == 0:
            log(f"replicated {num(len(persons) + made)} of {num(target)} persons")
    return k


def count_persons(driver: Driver) -> int:
    return int(driver.execute_query(f"MATCH (p:`{_P}`) RETURN count(p) AS n").records[0]["n"])


def max_rss_mb() -> float:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- 4. quality


@dataclass(slots=True)
class Quality:
    episodes: Counter[str] = field(default_factory=Counter)
    caught: Counter[str] = field(default_factory=Counter)
    caught_naive: Counter[str] = field(default_factory=Counter)
    evaluations: int = 0
    false_alerts: Counter[str] = field(default_factory=Counter)
    false_naive: Counter[str] = field(default_factory=Counter)
    #: false-alert evaluations where an alert's evidence lies inside an earlier episode
    stale: int = 0
    stale_naive: int = 0
    evals_with_alert: int = 0
    evals_with_naive: int = 0
    silences: Counter[str] = field(default_factory=Counter)
    silences_found: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    #: accounts of deceased persons, left out
    excluded: int = 0


def _in_episode(t: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(a <= t <= b for a, b in spans)


def measure_quality(driver: Driver, export: Export, *, evals: int, seed: int) -> Quality:
    started = time.perf_counter()
    svc = ShadowService(driver)
    naive = naive_rules()
    silent_ids = {r.id for r in svc.rules if isinstance(r, alert_rules.SilentRule)}
    # the generator gives devices to persons Synthea let die; the shadow (rightly) raises no
    # alert for the deceased, so their episodes are left out rather than counted as missed
    persons = person_of_accounts(driver, export.accounts, living=True)
    out = Quality(excluded=len(export.accounts) - len(persons))

    def fire(pid: str, at: int) -> tuple[list[str], list[str], list[int], list[int]]:
        data = svc.read([pid], at)[pid]
        _, fired = svc.evaluate(data)
        baseline = alert_rules.evaluate(naive, svc.snapshot(data), now=at)
        return (
            [a.rule for a in fired],
            [a.rule for a in baseline],
            [a.at for a in fired if a.rule not in silent_ids],
            [a.at for a in baseline],
        )

    spans: dict[str, list[tuple[int, int]]] = {}
    for ep in export.truth["episodes"]:
        if ep["account"] not in persons:
            continue
        a, b = _epoch(ep["start"]), _epoch(ep["end"])
        spans.setdefault(ep["account"], []).append((a, b))
        real, base, _, _ = fire(persons[ep["account"]], b)
        out.episodes[ep["kind"]] += 1
        out.caught[ep["kind"]] += bool(CATCHES[ep["kind"]] & set(real))
        out.caught_naive[ep["kind"]] += NAIVE_CATCHES[ep["kind"]] in base
    log(f"quality: {sum(out.episodes.values())} episodes replayed")

    rng = random.Random(seed)
    for account in sorted(persons):
        mine = spans.get(account, [])
        times: list[int] = []
        while len(times) < evals:
            t = rng.randint(export.start + 3600, export.end)
            if all(t < a - EPISODE_MARGIN_S or t > b + EPISODE_MARGIN_S for a, b in mine):
                times.append(t)
        for t in times:
            real, base, real_at, base_at = fire(persons[account], t)
            out.evaluations += 1
            loud = [r for r in real if r not in silent_ids]
            out.false_alerts.update(loud)
            out.false_naive.update(base)
            out.evals_with_alert += bool(loud)
            out.evals_with_naive += bool(base)
            # an alert still standing on the readings of an earlier episode (a spot device
            # has not measured since) is late, not false: counted separately
            out.stale += any(_in_episode(x, mine) for x in real_at)
            out.stale_naive += any(_in_episode(x, mine) for x in base_at)
    log(f"quality: {out.evaluations} person-evaluations away from episodes")

    for silence in export.truth["silences"]:
        if silence["end"] is not None or silence["account"] not in persons:
            continue
        kind = "continuous (wearable)" if silence["device"].endswith("-w") else "spot device"
        at = _epoch(silence["start"]) + SILENCE_CHECK_S
        data = svc.read([persons[silence["account"]]], at)[persons[silence["account"]]]
        _, fired = svc.evaluate(data)
        device = device_uid(VENDOR, silence["device"])
        out.silences[kind] += 1
        out.silences_found[kind] += any(a.rule in silent_ids and a.key == device for a in fired)
    out.seconds = time.perf_counter() - started
    return out


# --------------------------------------------------------------------------- output


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "-"


def print_ingest(off: IngestRun, on: IngestRun) -> None:
    print("\n1. Ingest with live alerting: the same readings, watcher off (baseline) / on\n")
    rows: list[list[object]] = []
    for run in (off, on):
        rows.append(
            [
                f"watch {'on' if run.watch else 'off'}",
                num(run.readings),
                f"{run.post_s:.1f}",
                f"{run.total_s:.1f}",
                num(rate(run.readings, run.total_s)),
            ]
        )
    print_table(["run", "readings", "POSTs s", "until evaluated s", "readings/s"], rows)
    ratio = rate(on.readings, on.total_s) / rate(off.readings, off.total_s)
    print(f"\nratio readings/s on / off: {ratio:.2f}x (POST phase alone: "
          f"{off.post_s / on.post_s:.2f}x)")  # fmt: skip
    if on.report is not None:
        r = on.report
        sev = ", ".join(f"{k} {v}" for k, v in sorted(r.severities.items())) or "none"
        print(
            f"watcher: {num(r.persons)} person recomputations, alerts opened {r.alerts_opened} "
            f"({sev}), escalated {r.alerts_escalated}, resolved {r.alerts_resolved}, data "
            f"requests opened {r.requests_opened}, change events {r.events}"
        )


def print_latency(res: LatencyResult) -> None:
    print(f"\n2. Alert latency, POST sent -> subscriber read it ({len(res.alert_ms)} trials, "
          f"{res.missed} missed)\n")  # fmt: skip
    rows = []
    for name, values in (
        ("alerts subscription (new medium alert)", res.alert_ms),
        ("baseline: changes subscription (same POST)", res.change_ms),
        ("POST response (reading committed)", res.post_ms),
    ):
        if values:
            rows.append(
                [
                    name,
                    num(percentile(values, 50), 1),
                    num(percentile(values, 95), 1),
                    num(max(values), 1),
                ]
            )
    print_table(["path", "p50 ms", "p95 ms", "max ms"], rows)
    if res.alert_ms and res.change_ms:
        a50, c50 = percentile(res.alert_ms, 50), percentile(res.change_ms, 50)
        print(f"\nratio alert p50 / change p50: {a50 / c50:.1f}x "
              f"(the shadow step adds {a50 - c50:.0f} ms at p50)")  # fmt: skip


@dataclass(slots=True)
class RecomputeFigures:
    persons: int
    copies: int
    replicate_s: float
    template: str
    main: RecomputeReport
    rss_before: float
    rss_after: float
    sample: int
    single: RecomputeReport
    batched: RecomputeReport
    traced: int
    trace_peak_mb: float
    batch_size: int


def print_recompute(f: RecomputeFigures) -> None:
    print(f"\n3. Full recomputation of {num(f.persons)} persons (template: {f.template}; "
          f"{f.copies} copies written in {f.replicate_s:.0f} s)\n")  # fmt: skip
    per_single = f.single.seconds / f.sample
    rows = [
        [
            f"recompute_all, batch {f.batch_size}",
            num(f.main.persons),
            f"{f.main.seconds:.1f}",
            num(rate(f.main.persons, f.main.seconds), 1),
        ],
        [
            f"same {f.sample} sample, batch {f.batch_size} (recomputed state)",
            num(f.batched.persons),
            f"{f.batched.seconds:.1f}",
            num(rate(f.batched.persons, f.batched.seconds), 1),
        ],
        [
            f"baseline: {f.sample} sample, batch 1",
            num(f.single.persons),
            f"{f.single.seconds:.1f}",
            num(rate(f.single.persons, f.single.seconds), 1),
        ],
        [
            f"baseline extrapolated to {num(f.persons)}",
            num(f.persons),
            f"{per_single * f.persons:.0f}",
            num(1 / per_single, 1),
        ],
    ]
    print_table(["run", "persons", "seconds", "persons/s"], rows)
    gain = rate(f.batched.persons, f.batched.seconds) / rate(f.single.persons, f.single.seconds)
    print(
        f"\nratio batch {f.batch_size} / batch 1 on the same sample: {gain:.1f}x; "
        f"full run vs extrapolated baseline: {per_single * f.persons / f.main.seconds:.1f}x"
    )
    print(
        f"peak RSS of this process: {num(f.rss_before)} MB before, {num(f.rss_after)} MB after "
        f"the full run; tracemalloc peak recomputing {f.traced} persons: "
        f"{num(f.trace_peak_mb, 1)} MB"
    )
    m = f.main
    sev = ", ".join(f"{k} {v}" for k, v in sorted(m.severities.items())) or "none"
    print(
        f"full run: scores {num(m.scores)} ({num(m.complete_scores)} complete), data requests "
        f"opened {num(m.requests_opened)}, alerts opened {num(m.alerts_opened)} ({sev}), "
        f"change events {num(m.events)}, unit errors {sum(m.unit_errors.values())}"
    )


def print_quality(q: Quality, evals: int) -> None:
    print(
        f"\n4. Alert quality against the generator's ground truth ({q.seconds:.0f} s; "
        f"{q.excluded} accounts of deceased persons left out)\n"
    )
    rows: list[list[object]] = []
    for kind in sorted(q.episodes):
        n = q.episodes[kind]
        rows.append(
            [
                kind,
                n,
                f"{q.caught[kind]} ({_pct(q.caught[kind], n)})",
                f"{q.caught_naive[kind]} ({_pct(q.caught_naive[kind], n)})",
            ]
        )
    total = sum(q.episodes.values())
    rows.append(
        [
            "all episodes",
            total,
            f"{sum(q.caught.values())} ({_pct(sum(q.caught.values()), total)})",
            f"{sum(q.caught_naive.values())} ({_pct(sum(q.caught_naive.values()), total)})",
        ]
    )
    print_table(["episode kind", "episodes", "caught: rules", "baseline: single reading"], rows)
    n = q.evaluations
    print(f"\nfalse alerts: {n} person-evaluations ({evals} per monitored person, seeded, "
          f">= 2 h from their episodes)\n")  # fmt: skip
    frows = [
        [
            "rules (non-silent)",
            sum(q.false_alerts.values()),
            f"{sum(q.false_alerts.values()) / n:.3f}" if n else "-",
            f"{q.evals_with_alert} ({_pct(q.evals_with_alert, n)})",
            q.stale,
        ],
        [
            "baseline: single reading",
            sum(q.false_naive.values()),
            f"{sum(q.false_naive.values()) / n:.3f}" if n else "-",
            f"{q.evals_with_naive} ({_pct(q.evals_with_naive, n)})",
            q.stale_naive,
        ],
    ]
    print_table(
        ["rules", "alerts", "per evaluation", "evaluations alerting", "on episode evidence"],
        frows,
    )
    by_rule = ", ".join(f"{k} {v}" for k, v in q.false_alerts.most_common()) or "none"
    by_naive = ", ".join(f"{k} {v}" for k, v in q.false_naive.most_common()) or "none"
    print(f"by rule: {by_rule}; baseline: {by_naive}")
    srows = [
        [kind, q.silences[kind], f"{q.silences_found[kind]} ({_pct(q.silences_found[kind], n)})"]
        for kind, n in sorted(q.silences.items())
    ]
    print(f"\nsilent devices (permanent stops), checked {SILENCE_CHECK_S // 86_400} days after "
          "the stop\n")  # fmt: skip
    print_table(["device", "stops", "silent-device alert"], srows or [["none", 0, "-"]])


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts to run")
    parser.add_argument("--patients", type=int, default=100, help="cached Synthea population")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of everything")
    parser.add_argument("--days", type=int, default=7, help="days of the template IoT export")
    parser.add_argument("--fraction", type=float, default=0.5, help="persons with devices")
    parser.add_argument("--readings", type=int, default=50_000, help="readings POSTed (ingest)")
    parser.add_argument("--batch", type=int, default=1000, help="readings per POST (ingest)")
    parser.add_argument("--trials", type=int, default=50, help="alert latency trials")
    parser.add_argument("--persons", type=int, default=10_000, help="persons recomputed")
    parser.add_argument("--sample", type=int, default=200, help="persons of the batch-1 baseline")
    parser.add_argument("--trace", type=int, default=500, help="persons under tracemalloc")
    parser.add_argument("--copy-batch", type=int, default=5000, help="rows per copy transaction")
    parser.add_argument("--evals", type=int, default=5, help="false-alert times per person")
    args = parser.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if unknown := parts - set(PARTS):
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}; known: {', '.join(PARTS)}")

    pop = population(args.patients, args.seed)
    with (
        tempfile.TemporaryDirectory(prefix="medshadow-bench-shadow-") as tmp_name,
        fresh_neo4j(heap="2g", pagecache="2g") as db,
    ):
        tmp = Path(tmp_name)
        driver = db.driver
        live_parts = parts & {"ingest", "latency"}
        stream = template = None
        if live_parts:
            # every person streams; its accounts include every account of the template
            stream = make_export(pop, tmp / "stream", seed=args.seed, days=1, fraction=1.0)
        if parts & {"recompute", "quality"}:
            template = make_export(
                pop, tmp / "template", seed=args.seed, days=args.days, fraction=args.fraction
            )
        accounts = stream or template
        assert accounts is not None
        load_base(driver, pop, accounts, tmp)
        if stream is not None and "latency" in parts:
            live = ShadowSettings(watch=True, clock=None)
            app = create_app(app_settings(db.uri, tmp, live), driver=driver)
            persons = person_of_accounts(driver, stream.accounts, living=True)
            with serve(app) as base:
                print_latency(latency_run(app, base, persons, args.trials, warmup=3))
            reset(driver)
        if stream is not None and "ingest" in parts:
            lines = stream_lines(stream, args.readings)
            end = datetime.fromtimestamp(stream.end, UTC)
            runs: list[IngestRun] = []
            for watch in (False, True):
                # the periodic silent-device sweep is not work caused by ingest: past the run
                shadow = ShadowSettings(watch=watch, clock=end, silence_check_interval_s=1e6)
                app = create_app(app_settings(db.uri, tmp, shadow), driver=driver)
                with serve(app) as base:
                    runs.append(ingest_run(app, base, driver, lines, args.batch, watch=watch))
                reset(driver)
            print_ingest(*runs)
        if template is not None:
            started = time.perf_counter()
            paths = [*template.meta_paths, template.root / "readings.ndjson"]
            iot = load_readings(driver, paths, vendor=VENDOR, quarantine_dir=tmp / "q-template")
            if not iot.ok:
                raise SystemExit(f"the template export did not load cleanly: {dict(iot.reasons)}")
            log(f"template readings: {num(iot.lines)} in {time.perf_counter() - started:.0f} s")
            if "quality" in parts:
                quality = measure_quality(driver, template, evals=args.evals, seed=args.seed)
                print_quality(quality, args.evals)
            if "recompute" in parts:
                print_recompute(recompute_part(driver, template, args))
    return 0


def recompute_part(driver: Driver, export: Export, args: argparse.Namespace) -> RecomputeFigures:
    template = read_template(driver, export.end)
    log(f"template: {template.size()}")
    started = time.perf_counter()
    copies = replicate(driver, template, args.persons, args.copy_batch)
    replicate_s = time.perf_counter() - started
    persons = count_persons(driver)
    log(f"{num(persons)} persons after {copies} copies in {replicate_s:.0f} s")
    batch_size = ShadowSettings().batch_size
    svc = ShadowService(driver)
    _ = (svc.groups, svc.expanded)  # the code sets are read once, outside the timed runs
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done % (batch_size * 8) < n:
            log(f"recomputed {num(done)} of {num(persons)}")

    rss_before = max_rss_mb()
    main_report = svc.recompute_all(as_of=export.end, batch_size=batch_size, on_batch=progress)
    rss_after = max_rss_mb()
    everyone = sorted(
        r["uid"] for r in driver.execute_query(f"MATCH (p:`{_P}`) RETURN p.uid AS uid").records
    )
    rng = random.Random(args.seed)
    sample = rng.sample(everyone, min(args.sample, len(everyone)))
    log(f"baseline: {len(sample)} persons one by one")
    single = svc.recompute_all(as_of=export.end, persons=sample, batch_size=1)
    batched = svc.recompute_all(as_of=export.end, persons=sample, batch_size=batch_size)
    traced = rng.sample(everyone, min(args.trace, len(everyone)))
    tracemalloc.start()
    svc.recompute_all(as_of=export.end, persons=traced, batch_size=batch_size)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return RecomputeFigures(
        persons=persons,
        copies=copies,
        replicate_s=replicate_s,
        template=template.size(),
        main=main_report,
        rss_before=rss_before,
        rss_after=rss_after,
        sample=len(sample),
        single=single,
        batched=batched,
        traced=len(traced),
        trace_peak_mb=peak / 2**20,
        batch_size=batch_size,
    )


if __name__ == "__main__":
    raise SystemExit(main())
