"""The live shadow end to end: readings streamed into the real app (uvicorn, the change feed, the
shadow watcher) open, de-duplicate and resolve alerts that reach a GraphQL subscriber, and
clinicians acknowledge them through the API with an audit trail. Nothing is timed here; the
latency is measured by bench/bench_shadow.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import neo4j
import pytest
from websockets.sync.client import ClientConnection, connect

from app.server import create_app
from app.settings import ApiSettings, NotifySettings, Settings, ShadowSettings
from tests.app.test_notify import Served, wait_until
from tests.conftest import ShadowWorld
from tests.web.conftest import serving

TOKENS = {"t-dev": "device", "t-doc": "clinician:dr-who", "t-int": "integrator"}

ALERTS = """
subscription($p: ID) { alerts(personId: $p) { id personId rule severity state occurrences
  evidence { name value } } }
"""
SHADOW = """
query($id: ID!) { patient(id: $id) { ... on Patient { shadow {
  alerts { id rule severity state occurrences trail { actor action severity note } }
  vitals { metric value sourceDomain }
} } } }
"""
ACK = """
mutation($id: ID!, $note: String) { acknowledgeAlert(id: $id, note: $note) {
  id state trail { actor action note } } }
"""


@pytest.fixture(scope="module")
def served(settings: Settings, driver: neo4j.Driver, shadow_world: ShadowWorld) -> Iterator[Served]:
    """The real app with the shadow watcher on the wall clock, a fast feed, on a free port."""
    tuned = settings.model_copy(
        update={
            "api": ApiSettings(tokens=TOKENS, anonymous_role="none"),
            "notify": NotifySettings(poll_interval_s=0.05, attach_interval_s=0.5),
            "shadow": ShadowSettings(clock=None, watch=True),
        }
    )
    app = create_app(tuned, driver=driver)
    with serving(app, "uvicorn-shadow-live") as url:
        yield Served(url, app)


@contextmanager
def _subscription(served: Served, person: str) -> Iterator[ClientConnection]:
    broker = served.notifier.broker
    before = broker.subscribers
    with connect(
        served.ws_url,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        open_timeout=10,
    ) as ws:
        ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer t-doc"}})
        )
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        payload = {"query": ALERTS, "variables": {"p": person}}
        ws.send(json.dumps({"id": "a", "type": "subscribe", "payload": payload}))
        # the stream is registered when the resolver starts; alerts from then on reach it
        wait_until("the subscription", lambda: broker.subscribers > before)
        yield ws


def _next_alert(ws: ClientConnection, rule: str = "news2") -> dict[str, Any]:
    """The next pushed alert of ``rule`` (the first recomputation on the wall clock may also
    push other alerts of the person, e.g. silent-device ones resolving)."""
    while True:
        message = json.loads(ws.recv(timeout=30))
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        alert: dict[str, Any] = message["payload"]["data"]["alerts"]
        if alert["rule"] == rule:
            return alert


def _post_spo2(url: str, world: ShadowWorld, account: str, value: float, at: datetime) -> None:
    line = {
        "account": account,
        "device": f"{account}-ox",
        "metric": "spo2",
        "time": at.isoformat(),
        "value": value,
        "unit": "%",
    }
    response = httpx2.post(
        f"{url}/ingest/readings",
        params={"vendor": world.vendor},
        content=json.dumps(line).encode() + b"\n",
        headers={"Authorization": "Bearer t-dev", "Content-Type": "application/x-ndjson"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1


def _gql(url: str, query: str, token: str, **variables: Any) -> dict[str, Any]:
    response = httpx2.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _account_of(driver: neo4j.Driver, world: ShadowWorld) -> tuple[str, str]:
    """A living person's device account (the dead raise no alerts)."""
    rows, _, _ = driver.execute_query(
        "MATCH (r:Patient)-[:RECORD_OF]->(p:Person) WHERE r.uid STARTS WITH $prefix "
        "AND NOT EXISTS { (p)<-[:RECORD_OF]-(x:Patient) WHERE x.deceased IS NOT NULL } "
        "RETURN r.recordId AS account, p.uid AS person ORDER BY p.uid LIMIT 1",
        prefix=f"{world.domain}/Patient/",
    )
    return rows[0]["account"], rows[0]["person"]


def test_a_low_spo2_reading_opens_one_alert_pushed_to_the_subscriber(
    served: Served, driver: neo4j.Driver, shadow_world: ShadowWorld
) -> None:
    account, person = _account_of(driver, shadow_world)
    url = served.url
    # three readings a few seconds apart in the last minute: distinct seconds, so none replaces
    # another (a reading is identified by its series and second)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60)
    with _subscription(served, person) as ws:
        # NEWS2 (RCP 2017): SpO2 <= 91 % on scale 1 scores 3 -> a single red parameter: medium
        _post_spo2(url, shadow_world, account, 85, t0)
        alert = _next_alert(ws)
        assert (alert["personId"], alert["rule"], alert["severity"]) == (person, "news2", "medium")
        assert alert["state"] == "open"
        evidence = {e["name"]: e["value"] for e in alert["evidence"]}
        assert evidence["spo2"] == "3"
        assert evidence["source"] == shadow_world.domain

        # the same condition again is the same alert (one more occurrence), not a new one
        _post_spo2(url, shadow_world, account, 86, t0 + timedelta(seconds=20))

        def repeated() -> dict[str, Any] | None:
            body = _gql(url, SHADOW, "t-doc", id=person)
            shown = body["data"]["patient"]["shadow"]["alerts"]
            mine = [a for a in shown if a["id"] == alert["id"]]
            return mine[0] if mine and mine[0]["occurrences"] == 2 else None

        again = wait_until("the second occurrence", repeated)
        opened = [a for a in _gql(url, SHADOW, "t-doc", id=person)["data"]["patient"]
                  ["shadow"]["alerts"] if a["rule"] == "news2" and a["state"] == "open"]  # fmt: skip
        assert len(opened) == 1
        assert [t["action"] for t in again["trail"]] == ["opened"]

        # acknowledged by a clinician, through the API; an integrator may not
        denied = _gql(url, ACK, "t-int", id=alert["id"])
        assert denied["errors"][0]["message"] == "not allowed: manage_alerts"
        acked = _gql(url, ACK, "t-doc", id=alert["id"], note="called the patient")
        ack = acked["data"]["acknowledgeAlert"]
        assert ack["state"] == "acknowledged"
        assert ack["trail"][-1] == {
            "actor": "dr-who",
            "action": "acknowledged",
            "note": "called the patient",
        }
        pushed = _next_alert(ws)  # the other screens hear of the acknowledgement
        assert (pushed["id"], pushed["state"]) == (alert["id"], "acknowledged")

        # a normal reading clears the condition: medshadow resolves the alert, on the trail
        _post_spo2(url, shadow_world, account, 97, t0 + timedelta(seconds=40))

        def resolved() -> dict[str, Any] | None:
            rows, _, _ = driver.execute_query(
                "MATCH (a:Alert {uid: $uid}) RETURN a.state AS state, a.trail AS trail",
                uid=alert["id"],
            )
            return dict(rows[0]) if rows and rows[0]["state"] == "resolved" else None

        row = wait_until("the alert to resolve", resolved)
        pushed = _next_alert(ws)
        assert (pushed["id"], pushed["state"]) == (alert["id"], "resolved")
        actions = [json.loads(t)["action"] for t in row["trail"]]
        assert actions == ["opened", "acknowledged", "resolved"]
        assert json.loads(row["trail"][-1])["actor"] == "medshadow"
        ws.send(json.dumps({"id": "a", "type": "complete"}))
    # the newest SpO2 is the one just posted, from the device cloud
    vitals = _gql(url, SHADOW, "t-doc", id=person)["data"]["patient"]["shadow"]["vitals"]
    spo2 = next(v for v in vitals if v["metric"] == "spo2")
    assert (spo2["value"], spo2["sourceDomain"]) == (97.0, shadow_world.domain)
