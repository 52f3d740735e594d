"""The change-feed dispatcher of the web process: subscriptions and signed webhooks.

The outbox in the graph (``graph/outbox.py``) is the source of truth: the CLI loader and other
processes write events there too. :class:`Notifier` runs two asyncio tasks, started and stopped
by ``create_app``'s lifespan:

* the **feed loop** reads events after its cursor (every ``poll_interval_s``, or at once when an
  in-process writer calls :meth:`Notifier.wake`) and fans them out to in-process subscribers
  through a :class:`ChangeBroker` (bounded queue per subscriber; one that falls behind is
  disconnected and may resume from its last cursor);
* the **webhook loop** sends due deliveries, per webhook strictly in event order: a failing
  delivery is retried with capped exponential backoff and jitter and holds back the later
  ones, so a receiver that was down gets the whole backlog, in order, when it returns.

Webhook requests are ``POST`` with a JSON body (:meth:`ChangeEventRow.payload`) and headers
``X-Medshadow-Timestamp`` (unix seconds), ``X-Medshadow-Event`` (event id),
``X-Medshadow-Delivery`` and ``X-Medshadow-Signature: sha256=<hex>``, the HMAC-SHA256 with the
webhook's secret of ``<timestamp>.<body>``. Receivers check it with :func:`verify_signature`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx2
import orjson

from access.changes import SubscriberOverflowError, webhook_allows
from access.consent import Model
from app.settings import NotifySettings
from graph import outbox
from graph.connection import Driver
from graph.outbox import ChangeEventRow, DeliveryRow, WebhookRow

log = logging.getLogger(__name__)
T = TypeVar("T")

SIGNATURE_HEADER = "X-Medshadow-Signature"
TIMESTAMP_HEADER = "X-Medshadow-Timestamp"
EVENT_HEADER = "X-Medshadow-Event"
DELIVERY_HEADER = "X-Medshadow-Delivery"


# --------------------------------------------------------------------------- signatures


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 over ``<timestamp>.<body>`` with the webhook's secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    tolerance_s: float | None = 300.0,
    now: float | None = None,
) -> bool:
    """For receivers: True when ``header`` (X-Medshadow-Signature) signs this exact body and
    timestamp (X-Medshadow-Timestamp) and, unless ``tolerance_s`` is None, the timestamp is
    within that many seconds of ``now`` (replays of old requests fail)."""
    if tolerance_s is not None:
        try:
            sent = float(timestamp)
        except ValueError:
            return False
        if abs((time.time() if now is None else now) - sent) > tolerance_s:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body), header.strip())


def backoff_delay(attempt: int, settings: NotifySettings, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential, capped,
    with up to ``backoff_jitter`` of it taken off at random so receivers are not stampeded."""
    exponent = min(max(attempt - 1, 0), 30)
    delay = min(settings.backoff_cap_s, settings.backoff_base_s * 2.0**exponent)
    return delay * (1 - settings.backoff_jitter * rng.random())


# --------------------------------------------------------------------------- broker


@dataclass(eq=False)
class _Subscriber:
    person: str | None
    domain: str | None
    queue: asyncio.Queue[ChangeEventRow | None]
    overflowed: bool = False

    def wants(self, event: ChangeEventRow) -> bool:
        return (self.person is None or event.person_uid == self.person) and (
            self.domain is None or event.domain == self.domain
        )


@dataclass
class ChangeBroker:
    """In-process fan-out with a bounded queue per subscriber (never blocks the publisher)."""

    queue_size: int = 1000
    _subscribers: set[_Subscriber] = field(default_factory=set)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def add(self, *, person: str | None, domain: str | None) -> _Subscriber:
        sub = _Subscriber(person, domain, asyncio.Queue(maxsize=self.queue_size + 1))
        self._subscribers.add(sub)
        return sub

    def remove(self, sub: _Subscriber) -> None:
        self._subscribers.discard(sub)

    def publish(self, event: ChangeEventRow) -> None:
        for sub in list(self._subscribers):
            if sub.overflowed or not sub.wants(event):
                continue
            if sub.queue.qsize() >= self.queue_size:
                # One slot is kept free for the end marker: the reader learns it was cut off.
                sub.overflowed = True
                sub.queue.put_nowait(None)
                self._subscribers.discard(sub)
                log.warning("change feed: a subscriber fell behind and was disconnected")
                continue
            sub.queue.put_nowait(event)


# --------------------------------------------------------------------------- dispatcher


class Notifier:
    """Polls the outbox, feeds the broker and sends webhooks; implements ``ChangeFeed``."""

    def __init__(
        self,
        driver: Driver,
        settings: NotifySettings,
        *,
        database: str | None = None,
        rng: random.Random | None = None,
        consent_model: Model = Model.OPT_OUT,
    ) -> None:
        self.driver = driver
        self.settings = settings
        self.database = database
        self.consent_model = consent_model
        self.broker = ChangeBroker(settings.subscriber_queue)
        #: Names this dispatcher in webhook leases (one sender per webhook across processes).
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leases: dict[str, float] = {}  # webhook uid -> monotonic time to renew by
        self._theirs: dict[str, float] = {}  # webhook uid -> when to ask for its lease again
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._cursor: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feed_wake = asyncio.Event()
        self._hooks_wake = asyncio.Event()
        self._stopping = False
        self._started = asyncio.Event()
        self._listeners: list[Callable[[ChangeEventRow], None]] = []

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start from the outbox's current head: subscribers hear of what happens from now on;
        webhooks resume every open delivery."""
        self._loop = asyncio.get_running_loop()
        self._cursor = await self._db(outbox.feed_head)
        self._tasks = [
            asyncio.create_task(self._feed_loop(), name="medshadow-change-feed"),
            asyncio.create_task(self._webhook_loop(), name="medshadow-webhooks"),
        ]
        self._started.set()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Let the loops finish their current step, then cancel whatever is left."""
        self._stopping = True
        self._feed_wake.set()
        self._hooks_wake.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def wake(self) -> None:
        """Read the outbox now; safe to call from any thread (in-process writers run in one)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._set_wake()
        else:
            loop.call_soon_threadsafe(self._set_wake)

    def _set_wake(self) -> None:
        self._feed_wake.set()
        self._hooks_wake.set()

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)

    @property
    def cursor(self) -> int | None:
        """The last sequence number published to subscribers."""
        return self._cursor

    def listen(self, callback: Callable[[ChangeEventRow], None]) -> None:
        """Call ``callback`` (on the event loop; it must not block) with every event as it is
        published, after the subscribers: in-process consumers such as the shadow watcher,
        which must never be disconnected for falling behind."""
        self._listeners.append(callback)

    # -- subscriptions (ChangeFeed) ------------------------------------------------------------

    def subscribe(
        self, *, person: str | None, domain: str | None, after: int | None
    ) -> AsyncGenerator[ChangeEventRow, None]:
        return self._stream(person, domain, after)

    async def _stream(
        self, person: str | None, domain: str | None, after: int | None
    ) -> AsyncGenerator[ChangeEventRow, None]:
        """Events with ``seq`` above a floor: ``after``, or the outbox head when the stream
        starts. The queue is registered once the floor is fixed; whatever the broker published
        between the floor and that moment is read back from the outbox (it is committed and
        gap-free), later events come through the queue."""
        await self._started.wait()
        floor = after if after is not None else await self._db(outbox.feed_head)
        sub = self.broker.add(person=person, domain=domain)
        try:
            upto = self._cursor or 0
            cursor = floor
            while cursor < upto:
                rows = await self._db(
                    outbox.events_after,
                    cursor,
                    limit=self.settings.batch_size,
                    person=person,
                    domain=domain,
                )
                backlog = [r for r in rows if r.seq <= upto]
                for row in backlog:
                    yield row
                if len(rows) < self.settings.batch_size or len(backlog) < len(rows):
                    break
                cursor = rows[-1].seq
            last = max(floor, upto)
            last_cursor = str(last)
            while True:
                event = await sub.queue.get()
                if event is None:
                    raise SubscriberOverflowError(last_cursor)
                if event.seq <= last:
                    continue
                last_cursor = event.cursor
                yield event
        finally:
            self.broker.remove(sub)

    # -- the feed loop -------------------------------------------------------------------------

    async def _feed_loop(self) -> None:
        gap_since: float | None = None
        next_attach = 0.0
        while not self._stopping:
            try:
                if time.monotonic() >= next_attach:
                    next_attach = time.monotonic() + self.settings.attach_interval_s
                    attached = await self._db(outbox.attach_persons)
                    if attached:
                        log.info("change feed: attached persons to %d earlier event(s)", attached)
                gap_since, more = await self._feed_once(gap_since)
            except Exception:  # the loop must outlive a database hiccup; it retries next tick
                log.exception("change feed: reading the outbox failed")
                more = False
            if not more:
                await _wait(self._feed_wake, self.settings.poll_interval_s)

    async def _feed_once(self, gap_since: float | None) -> tuple[float | None, bool]:
        cursor = self._cursor or 0
        rows = await self._db(outbox.events_after, cursor, limit=self.settings.batch_size)
        run = outbox.contiguous(rows, cursor)
        if rows and not run:
            now = time.monotonic()
            gap_since = gap_since or now
            if now - gap_since < self.settings.gap_grace_s:
                return gap_since, False
            log.warning(
                "change feed: seq %d..%d never appeared; skipped", cursor + 1, rows[0].seq - 1
            )
            run = outbox.contiguous(rows, rows[0].seq - 1)
        for event in run:
            self.broker.publish(event)
            for listener in self._listeners:
                listener(event)
        if run:
            self._cursor = run[-1].seq
            self._hooks_wake.set()  # their deliveries were committed with them
        return None, len(rows) == self.settings.batch_size and len(run) == len(rows)

    # -- the webhook loop ----------------------------------------------------------------------

    async def _webhook_loop(self) -> None:
        limit = asyncio.Semaphore(self.settings.webhook_concurrency)
        async with httpx2.AsyncClient(
            timeout=self.settings.webhook_timeout_s, follow_redirects=False
        ) as client:

            async def drain(hook: WebhookRow) -> None:
                async with limit:
                    await self._drain(client, hook)

            while not self._stopping:
                try:
                    due = await self._db(outbox.webhooks_due)
                    await asyncio.gather(*(drain(hook) for hook in due))
                except Exception:  # keep delivering after a database or network hiccup
                    log.exception("webhooks: a delivery round failed")
                await _wait(self._hooks_wake, self.settings.poll_interval_s)

    async def _drain(self, client: httpx2.AsyncClient, hook: WebhookRow) -> None:
        """Send the webhook's open deliveries in event order; stop at the first failure.

        Only the holder of the webhook's lease sends: with several replicas of the app, one
        sends and the others wait, so a delivery is never sent twice. The queue is read after
        the lease is taken and read again whenever it is renewed.
        """
        while not self._stopping:
            if not await self._hold(hook.uid):
                return  # another dispatcher holds this webhook
            rows = await self._db(outbox.open_deliveries, hook.uid, limit=self.settings.batch_size)
            renew = False
            for delivery in rows:
                if delivery.next_attempt_at and delivery.next_attempt_at > datetime.now(UTC):
                    return
                if time.monotonic() >= self._leases.get(hook.uid, 0.0):
                    renew = True
                    break
                if not await self._db(
                    webhook_allows, hook, delivery.event, model=self.consent_model
                ):
                    await self._db(outbox.mark_withheld, delivery.uid)  # consent: not sent
                    continue
                if not await self.send(client, hook, delivery):
                    return
            if not renew and len(rows) < self.settings.batch_size:
                return

    async def _hold(self, webhook: str) -> bool:
        """Own the webhook's lease for at least one more request. It is renewed in the graph
        once a third of it has passed (the lease lasts at least three request timeouts, so an
        attempt started while it is held ends before another dispatcher can take over)."""
        lease_s = max(self.settings.webhook_lease_s, 3 * self.settings.webhook_timeout_s)
        started = time.monotonic()
        if started < self._leases.get(webhook, 0.0):
            return True
        if started < self._theirs.get(webhook, 0.0):
            return False  # asked recently: another dispatcher holds it
        if not await self._db(outbox.claim_webhook, webhook, self.owner, lease_s=lease_s):
            self._leases.pop(webhook, None)
            self._theirs[webhook] = started + lease_s / 3
            return False
        self._leases[webhook] = started + lease_s / 3
        return True

    async def send(
        self, client: httpx2.AsyncClient, hook: WebhookRow, delivery: DeliveryRow
    ) -> bool:
        """One attempt, recorded in the delivery log whatever its outcome."""
        body = orjson.dumps(delivery.event.payload())
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(hook.secret, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
            EVENT_HEADER: delivery.event.uid,
            DELIVERY_HEADER: delivery.uid,
            "User-Agent": "medshadow-webhooks",
        }
        code: int | None = None
        try:
            response = await client.post(hook.url, content=body, headers=headers)
            code = response.status_code
            error = None if 200 <= code < 300 else f"HTTP {code}"
        except httpx2.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:300]
        attempt = delivery.attempts + 1
        if error is None:
            await self._db(outbox.mark_delivered, delivery.uid, status_code=code or 200)
            log.info(
                "webhook %s: event %s delivered (attempt %d)", hook.uid, delivery.event.seq, attempt
            )
            return True
        delay = backoff_delay(attempt, self.settings, self._rng)
        await self._db(
            outbox.mark_failed,
            delivery.uid,
            error=error,
            status_code=code,
            next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
        )
        log.info(
            "webhook %s: event %s attempt %d failed (%s); retry in %.1f s",
            hook.uid,
            delivery.event.seq,
            attempt,
            error,
            delay,
        )
        return False

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The driver is synchronous: run graph calls in a worker thread."""
        return await asyncio.to_thread(fn, self.driver, *args, database=self.database, **kwargs)


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)
    event.clear()
