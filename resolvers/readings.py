"""Device readings over GraphQL: series, trends and raw windows on ``Patient``; the
``ingestReadings`` mutation. Everything goes through :class:`access.readings.ReadingAccess`.

The ``Patient`` fields live in ``resolvers/types.py`` and call the functions here; the types are
referenced there lazily (``strawberry.lazy``) because this module imports ``resolvers.types``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import strawberry

from access.policy import AccessDeniedError
from access.readings import ReadingAccess
from loaders.errors import LoaderError
from loaders.readings import METRICS, Reading, ReadingError, check_vendor, parse_reading
from resolvers.context import Info, in_thread
from resolvers.types import (
    AccessDenied,
    Code,
    Connection,
    Edge,
    PageInfo,
    Source,
    TrendInterval,
    decode_cursor,
    encode_cursor,
)

MAX_INGEST = 10_000
MAX_TREND_POINTS = 5_000


_WIDTH = {TrendInterval.HOUR: 3600, TrendInterval.DAY: 86_400, TrendInterval.WEEK: 604_800}


@strawberry.type(description="The device a series comes from.")
class ReadingDevice:
    id: strawberry.ID
    record_id: str
    name: str | None
    type: str | None


@strawberry.type(description="One metric from one device of one domain record, over time.")
class ReadingSeries:
    id: strawberry.ID
    metric: str
    code: Code
    unit: str
    device: ReadingDevice | None
    source: Source
    count: int
    first: datetime | None
    last: datetime | None
    latest_value: float | None


@strawberry.type(description="Readings of one period aggregated (population standard deviation).")
class TrendPoint:
    start: datetime
    end: datetime
    count: int
    min: float
    max: float
    mean: float
    stddev: float


@strawberry.type(description="One raw reading.")
class DeviceReading:
    time: datetime
    value: float
    unit: str
    series: strawberry.ID


@strawberry.input(description="One reading pushed by a device cloud.")
class ReadingInput:
    account: str
    device: str
    metric: str = strawberry.field(description="heart_rate, bp_systolic, spo2, glucose, ...")
    time: datetime = strawberry.field(description="ISO-8601 with a UTC offset.")
    value: float
    unit: str = strawberry.field(description="The metric's UCUM unit, e.g. /min, mm[Hg], %.")


@strawberry.type
class RejectedReading:
    index: int
    reason: str


@strawberry.type(description="What an ingest did; re-sending the same readings changes nothing.")
class IngestReadingsResult:
    accepted: int
    rejected: int
    inserted: int
    replaced: int
    unchanged: int
    errors: list[RejectedReading]
    changed_records: list[str] = strawberry.field(
        description="Patient record ids whose readings changed (the change feed's input)."
    )


IngestReadingsPayload = Annotated[
    IngestReadingsResult | AccessDenied, strawberry.union("IngestReadingsPayload")
]


def _dt(value: Any) -> datetime | None:
    if value is None:
        return None
    native = value.to_native() if hasattr(value, "to_native") else value
    return native if isinstance(native, datetime) else None


def _epoch(value: datetime | None, default: int) -> int:
    if value is None:
        return default
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def _when(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _access(info: Info) -> ReadingAccess:
    feed = info.context.feed  # ingest publishes; wake the dispatcher for low latency
    return ReadingAccess.of(
        info.context.access, on_changes=(lambda _changes: feed.wake()) if feed else None
    )


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (known: {', '.join(sorted(METRICS))})")


async def _series_rows(info: Info, person: str, metric: str | None) -> list[dict[str, Any]]:
    access = _access(info)

    def fetch(uids: list[str]) -> list[Any]:
        grouped: dict[str, list[dict[str, Any]]] = {uid: [] for uid in uids}
        for row in access.series(uids, metric):
            grouped[row["uid"]].append(row)
        return [grouped[uid] for uid in uids]

    rows: list[dict[str, Any]] = await info.context.loaders.timeline(
        ("readingSeries", metric), fetch
    ).load(person)
    return rows


async def reading_series(info: Info, person: str, metric: str | None) -> list[ReadingSeries]:
    if metric is not None:
        _check_metric(metric)
    out = []
    for row in await _series_rows(info, person, metric):
        s, dom = row["series"], row["domain"]
        dev = s.get("device")
        out.append(
            ReadingSeries(
                id=strawberry.ID(s["uid"]),
                metric=s["metric"],
                code=Code(system="http://loinc.org", code=s["code"], display=s.get("display")),
                unit=s["unit"],
                device=ReadingDevice(
                    id=strawberry.ID(dev["uid"]),
                    record_id=dev["recordId"],
                    name=dev.get("name"),
                    type=dev.get("type"),
                )
                if dev
                else None,
                source=Source(
                    domain=dom["name"],
                    domain_id=strawberry.ID(dom["uid"]),
                    domain_kind=dom["kind"],
                    record_id=s["recordId"],
                ),
                count=int(s.get("count") or 0),
                first=_dt(s.get("firstTime")),
                last=_dt(s.get("lastTime")),
                latest_value=s.get("lastValue"),
            )
        )
    return out


async def reading_trend(
    info: Info,
    person: str,
    metric: str,
    since: datetime,
    until: datetime | None,
    every: TrendInterval,
) -> list[TrendPoint]:
    _check_metric(metric)
    lo = _epoch(since, 0)
    hi = _epoch(until, int(datetime.now(UTC).timestamp()) + 1)
    if hi <= lo:
        raise ValueError("until must be after since")
    width = _WIDTH[every]
    if (hi - lo) // width > MAX_TREND_POINTS:
        raise ValueError(f"at most {MAX_TREND_POINTS} points: use a wider interval")
    series = [r["series"]["uid"] for r in await _series_rows(info, person, metric)]
    points = await in_thread(_access(info).trend, series, lo, hi, every.value)
    return [
        TrendPoint(
            start=_when(p.start),
            end=_when(p.start + width),
            count=p.count,
            min=p.min,
            max=p.max,
            mean=p.mean,
            stddev=p.stddev,
        )
        for p in points
    ]


async def readings_window(
    info: Info,
    person: str,
    metric: str,
    since: datetime,
    until: datetime | None,
    first: int,
    after: str | None,
) -> Connection[DeviceReading]:
    _check_metric(metric)
    if not 1 <= first <= 5000:
        raise ValueError("first must be between 1 and 5000")
    lo = _epoch(since, 0)
    hi = _epoch(until, int(datetime.now(UTC).timestamp()) + 1)
    after_key: tuple[int, str] | None = None
    if after is not None:
        t, sid = decode_cursor(after, 2)
        try:
            after_key = (int(t), sid)
        except ValueError as e:
            raise ValueError("invalid cursor") from e
    series = [r["series"]["uid"] for r in await _series_rows(info, person, metric)]
    rows = await in_thread(_access(info).window, series, lo, hi, first + 1, after_key)
    unit = METRICS[metric].unit
    edges = [
        Edge(
            node=DeviceReading(time=_when(t), value=v, unit=unit, series=strawberry.ID(sid)),
            cursor=encode_cursor(str(t), sid),
        )
        for sid, t, v in rows[:first]
    ]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
        ),
    )


@strawberry.type
class ReadingsMutation:
    @strawberry.mutation(
        description="Device readings of one IoT cloud (vendor); at most 10,000 per call. "
        "Needs the device or admin role."
    )
    async def ingest_readings(
        self, info: Info, vendor: str, readings: list[ReadingInput]
    ) -> IngestReadingsPayload:
        access = _access(info)
        try:
            access.require_ingest()
        except AccessDeniedError as e:
            return AccessDenied(message=str(e))
        check_vendor_input(vendor)
        if len(readings) > MAX_INGEST:
            raise ValueError(f"at most {MAX_INGEST} readings per call")
        good: list[Reading] = []
        index: list[int] = []
        errors: list[RejectedReading] = []
        for i, r in enumerate(readings):
            try:
                good.append(
                    parse_reading(
                        {
                            "account": r.account,
                            "device": r.device,
                            "metric": r.metric,
                            "time": r.time.isoformat(),
                            "value": r.value,
                            "unit": r.unit,
                        },
                        vendor,
                    )
                )
                index.append(i)
            except ReadingError as why:
                errors.append(RejectedReading(index=i, reason=str(why)))
        result = await in_thread(access.ingest, good)
        for j in result.orphans:
            errors.append(
                RejectedReading(
                    index=index[j],
                    reason=f"unknown account {good[j].account_id!r}: no Patient record "
                    f"{good[j].record_uid}",
                )
            )
        for j in result.conflicts:
            errors.append(
                RejectedReading(
                    index=index[j],
                    reason=f"device {good[j].device_id!r} belongs to another account "
                    f"than {good[j].account_id!r}",
                )
            )
        errors.sort(key=lambda e: e.index)
        return IngestReadingsResult(
            accepted=result.accepted,
            rejected=len(errors),
            inserted=result.inserted,
            replaced=result.replaced,
            unchanged=result.unchanged,
            errors=errors,
            changed_records=sorted(result.changes),
        )


def check_vendor_input(vendor: str) -> None:
    try:
        check_vendor(vendor)
    except LoaderError as e:
        raise ValueError(str(e)) from e


QUERIES: tuple[type, ...] = ()
MUTATIONS: tuple[type, ...] = (ReadingsMutation,)
