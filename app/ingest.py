"""``POST /ingest/readings?vendor=<vendor>``: a device cloud streams NDJSON readings in.

The body is read as a stream and parsed line by line; every ``batch_size`` good readings are
written in one transaction (in a worker thread, so the event loop keeps reading), so memory
stays bounded whatever the body's size. Auth: a bearer token whose role may
``INGEST_READINGS`` (DEVICE or ADMIN), checked by :class:`access.readings.ReadingAccess`.

Responses: 401 without a (known) token, 403 for a role that may not ingest, 400 for a missing or
invalid vendor or an empty body; otherwise 200 with ``accepted`` / ``rejected`` counts, what
was new, replaced or unchanged, per-line ``errors`` (line number and reason, the first
:data:`MAX_ERRORS`), and ``changed``: Patient record uid -> kinds of data (the change feed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from access.policy import AccessDeniedError, Role
from access.readings import OnChanges, ReadingAccess
from app.readings import ReadingBatcher
from app.settings import Settings
from graph.readings import ReadingWriteResult
from loaders.errors import LoaderError
from loaders.readings import Reading, check_vendor, parse_reading_lines

MAX_ERRORS = 1000
BATCH_SIZE = 1000

Endpoint = Callable[[Request], Awaitable[Response]]


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _problem(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status, headers=headers)


async def _lines(request: Request) -> AsyncIterator[tuple[int, bytes]]:
    """The body's lines, numbered from 1, as they arrive."""
    rest = b""
    lineno = 0
    async for chunk in request.stream():
        rest += chunk
        *complete, rest = rest.split(b"\n")
        for line in complete:
            lineno += 1
            yield lineno, line
    if rest:
        yield lineno + 1, rest


def ingest_endpoint(
    settings: Settings, *, batch_size: int = BATCH_SIZE, on_changes: OnChanges | None = None
) -> Endpoint:
    """The route's handler, bound to the app's settings (tokens, database); ``on_changes`` gets
    each written batch's changed records (the change feed hooks in there)."""

    async def ingest_readings(request: Request) -> Response:
        token = _bearer(request)
        if token is None:
            return _problem(401, "bearer token required")
        principal = request.app.state.auth.principal(token)
        if principal.role is Role.NONE:
            return _problem(401, principal.error or "unknown token")
        notifier = getattr(request.app.state, "notifier", None)

        def changed(changes: dict[str, set[str]]) -> None:
            if notifier is not None:
                notifier.wake()  # subscribers hear of the readings now, not at the next poll
            if on_changes is not None:
                on_changes(changes)

        access = ReadingAccess.for_driver(
            request.app.state.driver,
            principal,
            database=settings.neo4j.database,
            on_changes=changed,
            audit=settings.auth.audit,  # each batch's writes, per person, as this device
        )
        try:
            access.require_ingest()
        except AccessDeniedError as e:
            return _problem(403, str(e))
        vendor = request.query_params.get("vendor", "")
        try:
            check_vendor(vendor)
        except LoaderError as e:
            return _problem(400, f"query parameter vendor: {e}")

        def write(batch: Sequence[Reading]) -> ReadingWriteResult:
            return access.ingest(batch)

        batcher = ReadingBatcher(write, batch_size=batch_size)

        async def flush() -> None:
            batch, where = batcher.take()
            if batch:
                batcher.record(batch, where, await asyncio.to_thread(write, batch))

        async for lineno, line in _lines(request):
            for where, item in parse_reading_lines(
                [line], source="body", vendor=vendor, start=lineno
            ):
                if batcher.add(where, item):
                    await flush()
        await flush()
        if batcher.lines == 0:
            return _problem(400, "empty body: send NDJSON, one reading per line")
        errors = [
            {"line": int(r.location.rsplit(":", 1)[1]), "reason": r.reason}
            for r in batcher.rejected[:MAX_ERRORS]
        ]
        result = batcher.result
        return JSONResponse(
            {
                "vendor": vendor,
                "lines": batcher.lines,
                "accepted": result.accepted,
                "rejected": len(batcher.rejected),
                "inserted": result.inserted,
                "replaced": result.replaced,
                "unchanged": result.unchanged,
                "errors": errors,
                "errorsTruncated": len(batcher.rejected) > MAX_ERRORS,
                "changed": {uid: sorted(kinds) for uid, kinds in sorted(result.changes.items())},
            }
        )

    return ingest_readings
