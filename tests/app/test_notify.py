"""The change feed end to end: the real app under uvicorn, websockets subscribers, webhooks.

A real write (a fact written with the graph writer) is followed by ``emit_changes``, as a load
does; the dispatcher started by ``create_app``'s lifespan picks the event up from the graph.
Webhook receivers are real HTTP servers on local ports (or nothing at all, when "down").
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import neo4j
import pytest
import uvicorn
from starlette.applications import Starlette
from websockets.sync.client import ClientConnection, connect

from app.notify import ChangeBroker, Notifier, sign, verify_signature
from app.server import create_app
from app.settings import ApiSettings, NotifySettings, Settings, ShadowSettings
from graph import outbox
from graph.embedded import free_port
from graph.outbox import ChangeEventRow
from tests.graph.ecosystem import Ecosystem, build_ecosystem

TOKENS = {
    "t-integrator": "integrator",
    "t-clinician": "clinician",
    "t-admin": "admin",
    "t-patient": "patient:portal:x/Patient/1",
    "t-steward": "steward",
}
SUBSCRIBE = """
subscription Changes($person: ID, $domain: ID, $after: String) {
  changes(personId: $person, domain: $domain, after: $after) {
    id cursor personId domain kinds records source at
  }
}
"""
REGISTER = """
mutation Register($domain: ID!, $url: String!, $secret: String) {
  registerWebhook(domain: $domain, url: $url, secret: $secret) {
    secret webhook { id url domain active }
  }
}
"""
DELIVERIES = """
query Log($id: ID!, $status: DeliveryStatus, $after: String) {
  webhookDeliveries(webhookId: $id, status: $status, first: 100, after: $after) {
    edges { cursor node { id status attempts lastError lastStatusCode nextAttemptAt history
                          event { id cursor personId kinds } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


@dataclass
class Served:
    url: str
    app: Starlette

    @property
    def notifier(self) -> Notifier:
        notifier = self.app.state.notifier
        assert isinstance(notifier, Notifier)
        return notifier

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"

    def gql(self, query: str, token: str | None, **variables: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx2.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def wait_until(what: str, check: Callable[[], Any], timeout_s: float = 60) -> Any:
    """Poll ``check`` until it returns something truthy (a liveness bound, not a timing test)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def served(settings: Settings, driver: neo4j.Driver) -> Iterator[Served]:
    """The real app with a fast dispatcher, on a free port, served by uvicorn in a thread."""
    fast = NotifySettings(
        poll_interval_s=0.05,
        backoff_base_s=0.05,
        backoff_cap_s=0.2,
        backoff_jitter=0.5,
        attach_interval_s=0.5,
        webhook_timeout_s=5,
    )
    config_settings = settings.model_copy(
        update={
            "api": ApiSettings(tokens=TOKENS, anonymous_role="none"),
            "notify": fast,
            # the feed itself under test: no shadow adding its own events (test_shadow_live.py)
            "shadow": ShadowSettings(watch=False),
        }
    )
    app = create_app(config_settings, driver=driver)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-notify-test", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert thread.is_alive(), "uvicorn stopped before /health answered"
        try:
            return httpx2.get(f"{url}/health", timeout=2).status_code == 200
        except httpx2.TransportError:
            return False

    wait_until("/health", healthy)
    served = Served(url, app)
    yield served
    notifier = served.notifier
    server.should_exit = True
    thread.join(timeout=30)
    assert not thread.is_alive(), "uvicorn did not shut down"
    assert not notifier.running, "the dispatcher outlived the app"


@pytest.fixture
def eco(driver: neo4j.Driver) -> Iterator[Ecosystem]:
    ecosystem = build_ecosystem(driver)
    yield ecosystem
    ecosystem.remove(driver)


# --------------------------------------------------------------------------- websockets


@contextmanager
def _open(
    served: Served, *, init: dict[str, Any] | None = None, header: str | None = None
) -> Iterator[ClientConnection]:
    """A graphql-transport-ws connection, initialised and acknowledged."""
    with connect(
        served.ws_url,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {header}"} if header else None,
        open_timeout=10,
    ) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": init or {}}))
        ack = json.loads(ws.recv(timeout=10))
        assert ack["type"] == "connection_ack", ack
        yield ws


def _subscribe(served: Served, ws: ClientConnection, op: str, **variables: Any) -> None:
    before = served.notifier.broker.subscribers
    ws.send(
        json.dumps(
            {"id": op, "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": variables}}
        )
    )
    # The stream is registered when the resolver starts; changes from then on reach it.
    wait_until("the subscription", lambda: served.notifier.broker.subscribers > before)


def _next(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=30))
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    event: dict[str, Any] = message["payload"]["data"]["changes"]
    return event


def test_a_subscriber_hears_of_changes_made_after_it_subscribed(
    served: Served, driver: neo4j.Driver, eco: Ecosystem
) -> None:
    earlier = outbox.emit_changes(driver, {eco.a1: {"Observation"}}, source="before")
    with _open(served, init={"Authorization": "Bearer t-clinician"}) as ws:
        _subscribe(served, ws, "1", person=eco.p1)
        eco.add_observation(driver, eco.b2, "8867-4")  # p2: filtered out
        outbox.emit_changes(driver, {eco.b2: {"Observation"}}, source="test:load-b")
        eco.add_observation(driver, eco.b1, "8480-6")
        (written,) = outbox.emit_changes(driver, {eco.b1: {"Observation"}}, source="test:load-b")
        event = _next(ws)
        assert event["id"] == written.uid
        assert event["id"] != earlier[0].uid
        assert event["personId"] == eco.p1
        assert event["domain"] == eco.clinic_b
        assert event["kinds"] == ["Observation"]
        assert event["records"] == [eco.b1]
        assert event["source"] == "test:load-b"
        assert event["cursor"] == str(written.seq)
        ws.send(json.dumps({"id": "1", "type": "complete"}))
    wait_until("the unsubscribe", lambda: served.notifier.broker.subscribers == 0)


def test_a_subscriber_resumes_from_a_cursor(
    served: Served, driver: neo4j.Driver, eco: Ecosystem
) -> None:
    start = outbox.feed_head(driver)
    missed = [
        outbox.emit_changes(driver, {eco.b2: {kind}}, source="while-away")[0]
        for kind in ("Observation", "Condition", "Procedure")
    ]
    wait_until("the feed", lambda: (served.notifier.cursor or 0) >= missed[-1].seq)
    # The token travels in the upgrade request's header this time.
    with _open(served, header="t-integrator") as ws:
        _subscribe(served, ws, "resume", person=eco.p2, after=str(start))
        (live,) = outbox.emit_changes(driver, {eco.b2: {"Immunization"}}, source="live")
        got = [_next(ws) for _ in range(4)]
    assert [e["id"] for e in got] == [e.uid for e in [*missed, live]]
    assert [e["kinds"] for e in got] == [
        ["Observation"],
        ["Condition"],
        ["Procedure"],
        ["Immunization"],
    ]


@pytest.mark.parametrize(
    ("init", "header"),
    [
        ({"Authorization": "Bearer t-patient"}, None),
        ({"Authorization": "Bearer t-steward"}, None),
        ({"Authorization": "Bearer not-a-token"}, None),
        (None, None),  # anonymous: no rights in this app
        (None, "t-patient"),
    ],
)
def test_subscriptions_need_the_subscribe_right(
    served: Served, init: dict[str, Any] | None, header: str | None
) -> None:
    with _open(served, init=init, header=header) as ws:
        ws.send(json.dumps({"id": "x", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
        message = json.loads(ws.recv(timeout=30))
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    # a refused token says why ("not allowed: subscribe_changes (unknown token)")
    assert errors[0]["message"].startswith("not allowed: subscribe_changes"), message


# --------------------------------------------------------------------------- webhooks


def test_webhook_registry_is_for_integrators_and_checks_urls(
    served: Served, eco: Ecosystem
) -> None:
    for token in ("t-clinician", "t-patient", None):
        denied = served.gql(REGISTER, token, domain=eco.clinic_a, url="https://clinic.test/h")
        assert denied["errors"][0]["message"] == "not allowed: manage_webhooks", token
    for url, message in [
        ("ftp://clinic.test/hook", "webhook url must use http or https, not ftp"),
        ("clinic.test/hook", "webhook url must use http or https, not none"),
        ("https:///hook", "webhook url has no host"),
    ]:
        bad = served.gql(REGISTER, "t-integrator", domain=eco.clinic_a, url=url)
        assert bad["errors"][0]["message"].startswith(message), bad
    unknown = served.gql(REGISTER, "t-admin", domain="mis:nowhere", url="https://clinic.test/h")
    assert unknown["errors"][0]["message"] == "unknown domain 'mis:nowhere'"

    ok = served.gql(REGISTER, "t-admin", domain=eco.clinic_a, url="https://clinic.test/h")
    registration = ok["data"]["registerWebhook"]
    assert len(registration["secret"]) >= 32  # generated: shown now, never again
    assert registration["webhook"]["active"] is True
    hook = registration["webhook"]["id"]
    log = served.gql(DELIVERIES, "t-clinician", id=hook)
    assert log["errors"][0]["message"] == "not allowed: manage_webhooks"
    off = served.gql(
        "mutation($id: ID!) { deactivateWebhook(id: $id) { id active } }", "t-integrator", id=hook
    )
    assert off["data"]["deactivateWebhook"] == {"id": hook, "active": False}


@dataclass
class Receiver:
    """A real HTTP endpoint that records every request (headers and raw body)."""

    port: int
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def test_a_receiver_that_was_down_gets_the_backlog_in_order(
    served: Served, driver: neo4j.Driver, eco: Ecosystem
) -> None:
    receiver = Receiver(free_port())  # nothing listens there yet
    secret = "a-shared-secret-of-the-clinic-0123"
    reg = served.gql(
        REGISTER,
        "t-integrator",
        domain=eco.clinic_a,
        url=f"http://127.0.0.1:{receiver.port}/medshadow",
        secret=secret,
    )["data"]["registerWebhook"]
    assert reg["secret"] == secret
    hook = reg["webhook"]["id"]

    # p1 has a record in clinic A: A hears of p1's changes in B too; p2 (B only) is not A's.
    emitted = []
    for record, kind in [
        (eco.a1, "Observation"),
        (eco.b1, "Condition"),
        (eco.b2, "Condition"),
        (eco.b1, "Procedure"),
    ]:
        eco.add_observation(driver, record, "8480-6")
        emitted += outbox.emit_changes(driver, {record: {kind}}, source="test:backlog")
    for_a = [e for e in emitted if e.person_uid == eco.p1]
    assert len(for_a) == 3

    def log(status: str | None = None) -> list[dict[str, Any]]:
        body = served.gql(DELIVERIES, "t-integrator", id=hook, status=status)
        return [edge["node"] for edge in body["data"]["webhookDeliveries"]["edges"]]

    # Down: the head delivery collects failed attempts with growing delays; the rest wait.
    backlog = wait_until(
        "three failed attempts", lambda: (d := log()) and d[0]["attempts"] >= 3 and d
    )
    assert [d["event"]["id"] for d in backlog] == [e.uid for e in for_a]
    assert backlog[0]["status"] == "FAILED"
    assert backlog[0]["lastError"].startswith("ConnectError")
    assert backlog[0]["nextAttemptAt"] is not None
    assert len(backlog[0]["history"]) >= 3
    assert [(d["status"], d["attempts"]) for d in backlog[1:]] == [("PENDING", 0), ("PENDING", 0)]

    receiver.start()  # up again
    try:
        wait_until("the backlog", lambda: len(log("DELIVERED")) == 3)
        (late,) = outbox.emit_changes(driver, {eco.a1: {"Observation"}}, source="test:after")
        wait_until("the next change", lambda: len(log("DELIVERED")) == 4)
    finally:
        receiver.stop()

    # In order, each exactly once (nothing delivered was sent again), each signature valid.
    bodies = [json.loads(body) for _, body in receiver.requests]
    assert [b["id"] for b in bodies] == [e.uid for e in [*for_a, late]]
    for (headers, body), event in zip(receiver.requests, [*for_a, late], strict=True):
        assert headers["x-medshadow-event"] == event.uid
        assert verify_signature(
            secret, headers["x-medshadow-timestamp"], body, headers["x-medshadow-signature"]
        )
        assert not verify_signature(
            "wrong-secret", headers["x-medshadow-timestamp"], body, headers["x-medshadow-signature"]
        )
    first = bodies[0]
    assert first["personId"] == eco.p1
    assert first["domain"] == eco.clinic_a
    assert first["kinds"] == ["Observation"]
    assert first["records"] == [eco.a1]
    assert first["cursor"] == str(for_a[0].seq)
    assert first["source"] == "test:backlog"
    done = log("DELIVERED")
    assert done[0]["attempts"] >= 4
    assert done[0]["lastStatusCode"] == 204
    assert log("FAILED") == []
    assert log("PENDING") == []


@contextmanager
def another_dispatcher(driver: neo4j.Driver, settings: NotifySettings) -> Iterator[Notifier]:
    """A second dispatcher on its own event loop, as a second replica of the app would run."""
    loop = asyncio.new_event_loop()
    notifier = Notifier(driver, settings)
    started = threading.Event()

    def run() -> None:
        loop.run_until_complete(notifier.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(notifier.stop())
        loop.close()

    thread = threading.Thread(target=run, name="second-dispatcher", daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield notifier
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_two_dispatchers_never_send_a_delivery_twice(
    served: Served, driver: neo4j.Driver, eco: Ecosystem
) -> None:
    receiver = Receiver(free_port())
    receiver.start()
    try:
        reg = served.gql(
            REGISTER,
            "t-integrator",
            domain=eco.clinic_a,
            url=f"http://127.0.0.1:{receiver.port}/hook",
        )["data"]["registerWebhook"]
        with another_dispatcher(driver, served.notifier.settings) as second:
            emitted = [
                outbox.emit_changes(driver, {eco.a1: {"Observation"}}, source=f"r{i}")[0]
                for i in range(30)
            ]
            wait_until(
                "every delivery",
                lambda: (
                    len(outbox.delivery_log(driver, reg["webhook"]["id"], status="delivered")) == 30
                ),
            )
    finally:
        receiver.stop()
    sent = [json.loads(body)["id"] for _, body in receiver.requests]
    assert sent == [e.uid for e in emitted]  # each once, in order, whichever replica sent it
    records, _, _ = driver.execute_query(
        "MATCH (w:Webhook {uid: $uid}) RETURN w.leaseOwner AS owner", uid=reg["webhook"]["id"]
    )
    assert records[0]["owner"] in {served.notifier.owner, second.owner}


def test_signatures_bind_body_and_time() -> None:
    body = b'{"id":"change:1"}'
    header = sign("secret", "1700000000", body)
    assert header.startswith("sha256=")
    assert verify_signature("secret", "1700000000", body, header, now=1700000100)
    assert not verify_signature("secret", "1700000000", body + b" ", header, now=1700000100)
    assert not verify_signature("secret", "1700000001", body, header, now=1700000100)
    assert not verify_signature("secret", "1700000000", body, header, now=1700001000)  # replay
    assert verify_signature("secret", "1700000000", body, header, tolerance_s=None)
    assert not verify_signature("secret", "yesterday", body, header)


def test_a_subscriber_that_falls_behind_is_cut_off_not_the_publisher() -> None:
    def drain(queue: asyncio.Queue[ChangeEventRow | None]) -> list[int]:
        out = []
        while not queue.empty():
            event = queue.get_nowait()
            out.append(event.seq if event else -1)
        return out

    async def scenario() -> tuple[list[int], list[int], list[int], int]:
        broker = ChangeBroker(queue_size=2)
        slow = broker.add(person=None, domain=None)
        other = broker.add(person="person:y", domain=None)
        mine = broker.add(person="person:x", domain="mis:a")
        read: list[int] = []
        for seq in (1, 2, 3):
            at = datetime.now(UTC)
            broker.publish(ChangeEventRow(f"e{seq}", seq, at, "person:x", "mis:a", (), (), "t"))
            read += drain(mine.queue)  # a reader keeping up
        return drain(slow.queue), drain(other.queue), read, broker.subscribers

    slow, other, mine, left = asyncio.run(scenario())
    assert slow == [1, 2, -1]  # two events, then the end marker: the reader learns it was cut off
    assert other == []  # filtered by person
    assert mine == [1, 2, 3]
    assert left == 2


def test_webhooks_respect_the_persons_consent(
    served: Served, driver: neo4j.Driver, eco: Ecosystem
) -> None:
    """A person who closed their record to clinic A: A's webhook is not told of their changes
    (the delivery is closed as withheld, unsent); after the revocation it is told again."""
    from graph.consent import revoke_consent, write_consent

    receiver = Receiver(free_port())
    receiver.start()
    try:
        hook = served.gql(
            REGISTER,
            "t-integrator",
            domain=eco.clinic_a,
            url=f"http://127.0.0.1:{receiver.port}/hook",
            secret=None,
        )["data"]["registerWebhook"]["webhook"]["id"]
        closed = write_consent(
            driver,
            {
                "person": eco.p1,
                "kind": "deny",
                "granteeType": "organisation",
                "grantee": eco.clinic_a,
                "categories": ["all"],
                "purposes": ["treatment"],
            },
            by="test-notify",
        )
        assert closed is not None
        (hidden,) = outbox.emit_changes(driver, {eco.b1: {"Condition"}}, source="test:consent")

        def status_of(event: str) -> str | None:
            body = served.gql(DELIVERIES, "t-integrator", id=hook, status=None)
            for edge in body["data"]["webhookDeliveries"]["edges"]:
                if edge["node"]["event"]["id"] == event:
                    return str(edge["node"]["status"])
            return None

        assert wait_until("the withheld delivery", lambda: status_of(hidden.uid) == "WITHHELD")
        revoke_consent(driver, closed["uid"], person=eco.p1, by="test-notify")
        (told,) = outbox.emit_changes(driver, {eco.b1: {"Condition"}}, source="test:consent")
        wait_until("the delivery", lambda: status_of(told.uid) == "DELIVERED")
        sent = [json.loads(body)["id"] for _, body in receiver.requests]
        assert hidden.uid not in sent
        assert told.uid in sent
    finally:
        receiver.stop()
        driver.execute_query("MATCH (c:Consent {createdBy: 'test-notify'}) DETACH DELETE c")
