"""The change-feed outbox against the real Neo4j: events, ordering, deliveries, the log."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import neo4j
import pytest

from graph import outbox
from graph.outbox import ChangeEventRow
from tests.graph.ecosystem import Ecosystem, build_ecosystem

DEAD_URL = "http://127.0.0.1:9/hook"  # never contacted here: no dispatcher runs in these tests


@pytest.fixture
def eco(driver: neo4j.Driver) -> Iterator[Ecosystem]:
    ecosystem = build_ecosystem(driver)
    yield ecosystem
    ecosystem.remove(driver)


def _webhook(driver: neo4j.Driver, domain: str) -> str:
    row = outbox.register_webhook(driver, domain, DEAD_URL, "s" * 32)
    assert row is not None
    return row.uid


def _deliveries(driver: neo4j.Driver, webhook: str) -> list[outbox.DeliveryRow]:
    return outbox.delivery_log(driver, webhook, limit=1000)


def test_one_event_per_person_and_domain(driver: neo4j.Driver, eco: Ecosystem) -> None:
    eco.add_observation(driver, eco.a1, "8480-6")
    events = outbox.emit_changes(
        driver,
        {eco.a1: {"Observation"}, eco.b1: {"Condition"}, eco.b2: ["Observation", "Observation"]},
        source="test:load",
    )
    assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + 3))
    got = {(e.person_uid, e.domain): (e.records, e.kinds) for e in events}
    assert got == {
        (eco.p1, eco.clinic_a): ((eco.a1,), ("Observation",)),
        (eco.p1, eco.clinic_b): ((eco.b1,), ("Condition",)),
        (eco.p2, eco.clinic_b): ((eco.b2,), ("Observation",)),
    }
    assert {e.source for e in events} == {"test:load"}
    records, _, _ = driver.execute_query(
        "MATCH (e:ChangeEvent)-[:CHANGED]->(p:Person) WHERE e.uid IN $uids "
        "RETURN e.uid AS uid, p.uid AS person",
        uids=[e.uid for e in events],
    )
    assert {r["uid"]: r["person"] for r in records} == {e.uid: e.person_uid for e in events}
    # Read back by cursor, as a subscriber catching up does.
    after = outbox.events_after(driver, events[0].seq - 1, person=eco.p1)
    assert [e.uid for e in after] == [e.uid for e in events if e.person_uid == eco.p1]
    assert outbox.feed_head(driver) >= events[-1].seq


def test_records_of_one_person_in_one_domain_share_an_event(
    driver: neo4j.Driver, eco: Ecosystem
) -> None:
    eco.link(driver, eco.a3, eco.p1)  # a second record of p1 in clinic A
    (event,) = outbox.emit_changes(
        driver, {eco.a1: {"Observation"}, eco.a3: {"AllergyIntolerance"}}, source="test"
    )
    assert event.person_uid == eco.p1
    assert event.records == tuple(sorted((eco.a1, eco.a3)))
    assert event.kinds == ("AllergyIntolerance", "Observation")


def test_unlinked_and_unknown_records_are_reported_not_lost(
    driver: neo4j.Driver, eco: Ecosystem, caplog: pytest.LogCaptureFixture
) -> None:
    ghost = f"{eco.clinic_b}/Patient/not-loaded"
    events = outbox.emit_changes(
        driver, {eco.a3: {"Observation"}, ghost: {"Condition"}}, source="test"
    )
    by_record = {e.records: e for e in events}
    assert by_record[(eco.a3,)].person_uid is None
    assert by_record[(eco.a3,)].domain == eco.clinic_a
    assert by_record[(ghost,)].person_uid is None
    assert by_record[(ghost,)].domain == eco.clinic_b  # taken from the uid
    assert "not in the graph" in caplog.text
    assert ghost in caplog.text


def test_a_clinic_hears_of_its_patients_changes_elsewhere(
    driver: neo4j.Driver, eco: Ecosystem
) -> None:
    hook_a = _webhook(driver, eco.clinic_a)
    hook_b = _webhook(driver, eco.clinic_b)
    off = _webhook(driver, eco.clinic_a)
    assert outbox.deactivate_webhook(driver, off) is not None
    p1_in_b, p2_in_b = outbox.emit_changes(
        driver, {eco.b1: {"Observation"}, eco.b2: {"Observation"}}, source="test"
    )
    # p1 has a record in A: A's webhook hears of the change made in B; p2 is B's only.
    assert [d.event.uid for d in _deliveries(driver, hook_a)] == [p1_in_b.uid]
    assert [d.event.uid for d in _deliveries(driver, hook_b)] == [p1_in_b.uid, p2_in_b.uid]
    assert _deliveries(driver, off) == []
    first = _deliveries(driver, hook_a)[0]
    assert (first.status, first.attempts, first.webhook_uid) == (outbox.PENDING, 0, hook_a)


def test_deliveries_are_due_in_event_order_and_a_failure_blocks_the_rest(
    driver: neo4j.Driver, eco: Ecosystem
) -> None:
    hook = _webhook(driver, eco.clinic_b)
    events = [
        outbox.emit_changes(driver, {eco.b2: {"Observation"}}, source=f"t{i}")[0] for i in range(3)
    ]
    now = datetime.now(UTC)
    queue = outbox.open_deliveries(driver, hook)
    assert [d.event.uid for d in queue] == [e.uid for e in events]
    assert hook in {w.uid for w in outbox.webhooks_due(driver, now=now)}

    head = queue[0]
    later = now + timedelta(hours=1)
    assert outbox.mark_failed(
        driver, head.uid, error="HTTP 503", status_code=503, next_attempt_at=later
    )
    # The head is not due, so nothing of this webhook is: the receiver will get them in order.
    assert hook not in {w.uid for w in outbox.webhooks_due(driver, now=now)}
    assert hook in {w.uid for w in outbox.webhooks_due(driver, now=later + timedelta(seconds=1))}
    failed = outbox.delivery_log(driver, hook, status=outbox.FAILED)
    assert [(d.uid, d.attempts, d.last_error, d.last_status_code) for d in failed] == [
        (head.uid, 1, "HTTP 503", 503)
    ]
    assert len(failed[0].history) == 1
    assert "HTTP 503" in failed[0].history[0]

    assert outbox.mark_delivered(driver, head.uid, status_code=204)
    assert not outbox.mark_delivered(driver, head.uid, status_code=200)  # never twice
    assert not outbox.mark_failed(driver, head.uid, error="late", next_attempt_at=later)
    (done,) = outbox.delivery_log(driver, hook, status=outbox.DELIVERED)
    assert (done.uid, done.attempts, done.last_status_code) == (head.uid, 2, 204)
    assert [d.uid for d in outbox.open_deliveries(driver, hook)] == [d.uid for d in queue[1:]]
    # Paging the log by cursor (the event's sequence number).
    page = outbox.delivery_log(driver, hook, after=events[0].seq, limit=1)
    assert [d.event.uid for d in page] == [events[1].uid]
    with pytest.raises(ValueError, match="unknown delivery status 'lost'"):
        outbox.delivery_log(driver, hook, status="lost")


def test_late_links_attach_the_person_and_reach_the_other_clinics(
    driver: neo4j.Driver, eco: Ecosystem
) -> None:
    hook_a = _webhook(driver, eco.clinic_a)
    hook_b = _webhook(driver, eco.clinic_b)
    (event,) = outbox.emit_changes(driver, {eco.a3: {"Observation"}}, source="test")
    assert event.person_uid is None
    assert [d.event.uid for d in _deliveries(driver, hook_a)] == [event.uid]
    assert _deliveries(driver, hook_b) == []

    eco.link(driver, eco.a3, eco.p2)  # the MPI decides: a3 is p2, who also has a record in B
    assert outbox.attach_persons(driver) >= 1
    (again,) = outbox.events_after(driver, event.seq - 1, person=eco.p2)
    assert again.uid == event.uid
    assert [d.event.uid for d in _deliveries(driver, hook_b)] == [event.uid]
    assert [d.event.uid for d in _deliveries(driver, hook_a)] == [event.uid]  # not twice
    outbox.attach_persons(driver)  # again: nothing left to attach for this event
    records, _, _ = driver.execute_query(
        "MATCH (e:ChangeEvent {uid: $uid})<-[:DELIVERS]-(dl) "
        "RETURN count(dl) AS n, e.unlinked AS unlinked, [(e)-[:CHANGED]->(p) | p.uid] AS persons",
        uid=event.uid,
    )
    assert (records[0]["n"], records[0]["unlinked"], records[0]["persons"]) == (2, None, [eco.p2])


def test_concurrent_writers_cannot_reorder_the_feed(driver: neo4j.Driver, eco: Ecosystem) -> None:
    """Writers race; a reader that only takes the gap-free run after its cursor sees every
    event exactly once, in sequence order."""
    start = outbox.feed_head(driver)
    writers, per_writer = 4, 15
    written: list[ChangeEventRow] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for j in range(per_writer):
                record = (eco.a1, eco.b1, eco.b2, eco.a3)[(i + j) % 4]
                rows = outbox.emit_changes(driver, {record: {"Observation"}}, source=f"w{i}")
                with lock:
                    written.extend(rows)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    seen: list[ChangeEventRow] = []
    cursor = start
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) or cursor < start + writers * per_writer:
        run = outbox.contiguous(outbox.events_after(driver, cursor, limit=50), cursor)
        seen.extend(e for e in run if e.domain in eco.domains)
        cursor = run[-1].seq if run else cursor
        if not any(t.is_alive() for t in threads) and not run and errors:
            break
    for t in threads:
        t.join()
    assert errors == []
    mine = sorted(written, key=lambda e: e.seq)
    assert [e.seq for e in mine] == list(range(start + 1, start + 1 + writers * per_writer))
    assert [e.uid for e in seen] == [e.uid for e in mine]


def test_one_dispatcher_at_a_time_holds_a_webhook(driver: neo4j.Driver, eco: Ecosystem) -> None:
    hook = _webhook(driver, eco.clinic_a)
    now = datetime.now(UTC)
    assert outbox.claim_webhook(driver, hook, "replica-1", lease_s=60, now=now)
    assert not outbox.claim_webhook(driver, hook, "replica-2", lease_s=60, now=now)
    assert outbox.claim_webhook(driver, hook, "replica-1", lease_s=60, now=now)  # renewal
    later = now + timedelta(seconds=61)  # replica-1 stopped renewing: its lease ran out
    assert outbox.claim_webhook(driver, hook, "replica-2", lease_s=60, now=later)
    assert not outbox.claim_webhook(driver, hook, "replica-1", lease_s=60, now=later)
    assert not outbox.claim_webhook(driver, "webhook:none", "replica-1", lease_s=60)
