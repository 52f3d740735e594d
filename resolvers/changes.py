"""The change feed over GraphQL: the ``changes`` subscription and the webhook registry.

Reads and writes go through :class:`access.changes.ChangeAccess` (``MANAGE_WEBHOOKS`` for the
registry and its delivery log, ``SUBSCRIBE_CHANGES`` for the stream).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from access.changes import ChangeAccess
from graph.outbox import ChangeEventRow, DeliveryRow, WebhookRow
from resolvers.context import Info, in_thread
from resolvers.types import Connection, Edge, PageInfo


@strawberry.enum(description="Where a webhook delivery stands.")
class DeliveryStatus(Enum):
    PENDING = "pending"
    FAILED = "failed"
    DELIVERED = "delivered"
    WITHHELD = "withheld"


@strawberry.type(description="A person's data changed in a domain (one load or mutation).")
class ChangeEvent:
    id: strawberry.ID
    cursor: str = strawberry.field(description="Pass as `after` to resume after this event.")
    person_id: strawberry.ID | None = strawberry.field(
        description="The person; null while the record is not linked to one yet."
    )
    domain: strawberry.ID = strawberry.field(description="The domain where the change happened.")
    kinds: list[str] = strawberry.field(description="Data kinds that changed (Observation, ...).")
    records: list[strawberry.ID] = strawberry.field(description="The Patient records changed.")
    at: datetime
    source: str = strawberry.field(description="The load or mutation that changed the data.")

    @classmethod
    def from_row(cls, row: ChangeEventRow) -> ChangeEvent:
        return cls(
            id=strawberry.ID(row.uid),
            cursor=row.cursor,
            person_id=strawberry.ID(row.person_uid) if row.person_uid else None,
            domain=strawberry.ID(row.domain),
            kinds=list(row.kinds),
            records=[strawberry.ID(r) for r in row.records],
            at=row.at,
            source=row.source,
        )


@strawberry.type(description="An endpoint told about changes to the persons its domain holds.")
class Webhook:
    id: strawberry.ID
    url: str
    domain: strawberry.ID
    active: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: WebhookRow) -> Webhook:
        return cls(
            id=strawberry.ID(row.uid),
            url=row.url,
            domain=strawberry.ID(row.domain),
            active=row.active,
            created_at=row.created_at,
        )


@strawberry.type
class WebhookRegistration:
    webhook: Webhook
    secret: str = strawberry.field(
        description="HMAC-SHA256 key of the X-Medshadow-Signature header. Shown only now."
    )


@strawberry.type(description="One event's delivery to one webhook, with its attempts.")
class WebhookDelivery:
    id: strawberry.ID
    event: ChangeEvent
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    history: list[str] = strawberry.field(description="The latest attempts: time and outcome.")

    @classmethod
    def from_row(cls, row: DeliveryRow) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(row.uid),
            event=ChangeEvent.from_row(row.event),
            status=DeliveryStatus(row.status),
            attempts=row.attempts,
            created_at=row.created_at,
            next_attempt_at=row.next_attempt_at,
            delivered_at=row.delivered_at,
            last_error=row.last_error,
            last_status_code=row.last_status_code,
            history=list(row.history),
        )


def _changes(info: Info) -> ChangeAccess:
    return ChangeAccess.for_access(info.context.access, feed=info.context.feed)


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise ValueError(f"invalid cursor {value!r}")
    return int(value)


@strawberry.type
class ChangeQuery:
    @strawberry.field(description="A webhook's delivery log, in event order.")
    async def webhook_deliveries(
        self,
        info: Info,
        webhook_id: strawberry.ID,
        status: DeliveryStatus | None = None,
        first: Annotated[int, strawberry.argument(description="page size, 1-500")] = 50,
        after: str | None = None,
    ) -> Connection[WebhookDelivery]:
        if not 1 <= first <= 500:
            raise ValueError("first must be between 1 and 500")
        rows = await in_thread(
            _changes(info).deliveries,
            str(webhook_id),
            status=status.value if status else None,
            first=first + 1,
            after=_cursor(after) or 0,
        )
        edges = [
            Edge(node=WebhookDelivery.from_row(r), cursor=r.event.cursor) for r in rows[:first]
        ]
        return Connection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > first,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )


@strawberry.type
class ChangeMutation:
    @strawberry.mutation(
        description="Tell `url` about changes to every person `domain` holds a record of. "
        "The signing secret is generated unless given, and returned only in this answer."
    )
    async def register_webhook(
        self, info: Info, domain: strawberry.ID, url: str, secret: str | None = None
    ) -> WebhookRegistration:
        registration = await in_thread(_changes(info).register_webhook, str(domain), url, secret)
        return WebhookRegistration(
            webhook=Webhook.from_row(registration.webhook), secret=registration.secret
        )

    @strawberry.mutation(description="Stop new deliveries to a webhook; its log stays.")
    async def deactivate_webhook(self, info: Info, id: strawberry.ID) -> Webhook:
        return Webhook.from_row(await in_thread(_changes(info).deactivate_webhook, str(id)))


@strawberry.type
class ChangeSubscription:
    @strawberry.subscription(
        description="Change events committed after subscribing (or after cursor `after`), "
        "optionally of one person or of changes made in one domain."
    )
    async def changes(
        self,
        info: Info,
        person_id: strawberry.ID | None = None,
        domain: strawberry.ID | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[ChangeEvent, None]:
        feed = _changes(info)
        stream = feed.subscribe(
            person=str(person_id) if person_id else None,
            domain=str(domain) if domain else None,
            after=_cursor(after),
        )
        async with aclosing(stream):  # unsubscribes at once when the client completes
            async for row in stream:
                visible = await in_thread(feed.visible, row)  # consent, per event
                if visible is not None:
                    yield ChangeEvent.from_row(visible)


QUERIES: tuple[type, ...] = (ChangeQuery,)
MUTATIONS: tuple[type, ...] = (ChangeMutation,)
SUBSCRIPTIONS: tuple[type, ...] = (ChangeSubscription,)
