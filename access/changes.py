"""Checked access to the change feed: webhook registry, delivery log, subscriptions.

Webhooks need :attr:`Action.MANAGE_WEBHOOKS` (integrators, admins); subscriptions need
:attr:`Action.SUBSCRIBE_CHANGES`. Every event is re-decided against the person's consent as it
is about to go out (:meth:`ChangeAccess.visible`, :func:`webhook_allows`): a revocation stops
the next event, not the next connection. The live stream itself comes from a :class:`ChangeFeed`
(the web process's broker in ``app/notify.py``), injected so this module stays free of asyncio
plumbing and of the web app.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol
from urllib.parse import urlsplit

from access.consent import Model, kind_categories
from access.guard import ConsentGuard
from access.policy import Action, Principal, Role, require
from access.records import RecordAccess
from graph import outbox
from graph.connection import Driver
from graph.outbox import ChangeEventRow, DeliveryRow, WebhookRow
from graph.reader import GraphReader

#: Longest webhook URL accepted (the common limit of HTTP stacks).
MAX_URL_LENGTH = 2048


class ChangeFeed(Protocol):
    """The live change stream of one process."""

    def subscribe(
        self, *, person: str | None, domain: str | None, after: int | None
    ) -> AsyncGenerator[ChangeEventRow, None]:
        """Events committed after the call (or after cursor ``after``), in sequence order."""
        ...

    def wake(self) -> None:
        """Look at the outbox now (an in-process writer just emitted events)."""
        ...


class ChangeFeedError(Exception):
    """Expected failures of a change subscription; their messages are safe to show."""


class ChangeFeedUnavailableError(ChangeFeedError):
    """Subscriptions need the web process's dispatcher; this context has none."""


class SubscriberOverflowError(ChangeFeedError):
    """A subscriber let its queue fill up; it was disconnected and may resume by cursor."""

    def __init__(self, cursor: str | None) -> None:
        where = f" with after: {cursor!r}" if cursor else ""
        super().__init__(f"subscriber fell behind the change feed; resubscribe{where}")
        self.cursor = cursor


@dataclass(frozen=True, slots=True)
class Registration:
    webhook: WebhookRow
    secret: str  # shown once: the registry never returns it again


def validate_webhook_url(url: str) -> str:
    """An absolute http(s) URL with a host, else ValueError saying what is wrong."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"webhook url is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        shown = parts.scheme or "none"
        raise ValueError(f"webhook url must use http or https, not {shown}: {url!r}")
    if not parts.hostname:
        raise ValueError(f"webhook url has no host: {url!r}")
    if parts.username or parts.password:
        raise ValueError("webhook url must not carry credentials; the secret signs each delivery")
    return url


class ChangeAccess:
    """The change feed for one principal (one per request or websocket connection)."""

    def __init__(
        self,
        driver: Driver,
        principal: Principal,
        *,
        database: str | None = None,
        feed: ChangeFeed | None = None,
        records: RecordAccess | None = None,
    ) -> None:
        self._driver = driver
        self._database = database
        self._feed = feed
        self.principal = principal
        self._records = records or RecordAccess(GraphReader(driver, database=database), principal)

    @classmethod
    def for_access(cls, access: RecordAccess, *, feed: ChangeFeed | None = None) -> ChangeAccess:
        """The change feed for the same request (principal, driver, database) as ``access``."""
        reader = access.reader
        return cls(
            reader.driver, access.principal, database=reader.database, feed=feed, records=access
        )

    def require(self, action: Action) -> None:
        require(self.principal, action)

    # -- webhooks ------------------------------------------------------------------------------

    def register_webhook(self, domain: str, url: str, secret: str | None) -> Registration:
        self.require(Action.MANAGE_WEBHOOKS)
        url = validate_webhook_url(url)
        if secret is not None and len(secret) < 16:
            raise ValueError("webhook secret must be at least 16 characters (or omit it)")
        secret = secret or secrets.token_urlsafe(32)
        row = outbox.register_webhook(self._driver, domain, url, secret, database=self._database)
        if row is None:
            raise ValueError(f"unknown domain {domain!r}")
        return Registration(row, secret)

    def deactivate_webhook(self, uid: str) -> WebhookRow:
        self.require(Action.MANAGE_WEBHOOKS)
        row = outbox.deactivate_webhook(self._driver, uid, database=self._database)
        if row is None:
            raise ValueError(f"unknown webhook {uid!r}")
        return row

    def deliveries(
        self, webhook: str, *, status: str | None, first: int, after: int
    ) -> list[DeliveryRow]:
        self.require(Action.MANAGE_WEBHOOKS)
        if outbox.get_webhook(self._driver, webhook, database=self._database) is None:
            raise ValueError(f"unknown webhook {webhook!r}")
        return outbox.delivery_log(
            self._driver,
            webhook,
            status=status,
            after=after,
            limit=first,
            database=self._database,
        )

    # -- events --------------------------------------------------------------------------------

    def subscribe(
        self, *, person: str | None, domain: str | None, after: int | None
    ) -> AsyncGenerator[ChangeEventRow, None]:
        self.require(Action.SUBSCRIBE_CHANGES)
        if self._feed is None:
            raise ChangeFeedUnavailableError("change subscriptions need the web server's feed")
        return self._feed.subscribe(person=person, domain=domain, after=after)

    def visible(self, event: ChangeEventRow) -> ChangeEventRow | None:
        """The event as this subscriber may see it (kinds narrowed by consent), or None.

        Consent is read afresh for every event and the decision is audited at once.
        """
        try:
            return event_for(self._records.guard, event)
        finally:
            self._records.flush_audit()

    def emit(self, changes: Mapping[str, Iterable[str]], *, source: str) -> list[ChangeEventRow]:
        """For in-process writers, after their own checked write: record the change and wake
        the dispatcher so subscribers hear of it at once."""
        events = outbox.emit_changes(self._driver, changes, source=source, database=self._database)
        if events and self._feed is not None:
            self._feed.wake()
        return events


def event_for(guard: ConsentGuard, event: ChangeEventRow) -> ChangeEventRow | None:
    """``event`` narrowed to the kinds the guard's principal may know changed, or None.

    An event of a record not linked to a person yet goes only to its own domain's systems.
    """
    principal = guard.principal
    if event.person_uid is None:
        mine = principal.role is Role.ADMIN or principal.organisation == event.domain
        return event if mine or not guard.enforce else None
    guard.forget([event.person_uid])
    decision = guard.decision(event.person_uid)
    kinds = tuple(
        k for k in event.kinds if not guard.enforce or decision.allows(kind_categories(k))
    )
    what = f"change:{','.join(event.kinds)}"
    if not kinds:
        guard.audit_note(event.person_uid, "read", "denied", "no consent", what=what)
        return None
    guard.audit_note(event.person_uid, "read", "allowed", what=what)
    return replace(event, kinds=kinds)


def webhook_allows(
    driver: Driver,
    hook: WebhookRow,
    event: ChangeEventRow,
    *,
    model: Model = Model.OPT_OUT,
    database: str | None = None,
) -> bool:
    """May this webhook (its domain's system) be told of this event? Audited either way."""
    principal = Principal(f"webhook:{hook.uid}", Role.INTEGRATOR, organisation=hook.domain)
    records = RecordAccess.for_driver(driver, principal, database=database, model=model)
    try:
        return event_for(records.guard, event) is not None
    finally:
        records.flush_audit()
