"""Personal monitors and wearables: an IoT cloud's accounts, devices and readings -> typed rows.

Phase one of a readings load; nothing here touches Neo4j. An IoT cloud (domain
``iot:<vendor>``, kind ``IOT_CLOUD``) exports three kinds of file, told apart by name:

* ``accounts*.ndjson`` - the cloud's user profiles: ``id, name, birthDate, gender, email,
  phone, postalCode, city, addressLine`` (usually no national id). Each becomes a domain-local
  Patient record ``iot:<vendor>/Patient/<id>`` (:func:`accounts_batch`).
* ``devices*.ndjson`` - ``id, account, type, model, manufacturer, registered``.
* ``readings*.ndjson`` / ``readings*.csv`` - ``account, device, metric, time, value, unit``:
  ``time`` ISO-8601 with a UTC offset, ``metric`` a key of :data:`METRICS`, ``unit`` its UCUM
  unit (or a listed alias). The streaming HTTP endpoint accepts the same NDJSON lines.

A bad line (malformed JSON, unknown metric, unit mismatch, a value out of the metric's
physiological range, a time without offset) becomes a :class:`Rejected` naming ``file:line``
and the reason; the good lines of the same file are kept.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from loaders.errors import LoaderError
from loaders.patient_record import RECORD_KIND, add_domain, add_record
from ontology.model import DomainKind, Label, RelType
from ontology.records import GraphBatch

LOINC = "http://loinc.org"
VENDOR_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ReadingError(LoaderError):
    """Why one line cannot load; caught per line, never escapes a parser."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One measurable quantity: its LOINC code, UCUM unit and the range a real value lies in."""

    key: str
    code: str
    display: str
    unit: str
    low: float
    high: float
    aliases: frozenset[str] = frozenset()
    system: str = LOINC

    def accepts(self, unit: str) -> bool:
        return unit == self.unit or unit in self.aliases


def _m(
    key: str, code: str, display: str, unit: str, low: float, high: float, *aliases: str
) -> Metric:
    return Metric(key, code, display, unit, low, high, frozenset(aliases))


#: Every metric a device may report: the one table of codes, units and plausible ranges.
METRICS: Mapping[str, Metric] = {
    m.key: m
    for m in (
        _m("heart_rate", "8867-4", "Heart rate", "/min", 20, 300, "bpm", "{beats}/min"),
        _m("bp_systolic", "8480-6", "Systolic blood pressure", "mm[Hg]", 40, 300, "mmHg"),
        _m("bp_diastolic", "8462-4", "Diastolic blood pressure", "mm[Hg]", 20, 200, "mmHg"),
        _m(
            "spo2",
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
            "%",
            50,
            100,
        ),
        _m("glucose", "2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 10, 1000, "mg/dl"),
        _m("weight", "29463-7", "Body weight", "kg", 0.5, 400),
        _m("steps", "55423-8", "Number of steps", "{steps}", 0, 100_000, "steps"),
        _m("body_temperature", "8310-5", "Body temperature", "Cel", 30, 45, "°C"),
        _m("urine_ph", "5803-2", "pH of Urine by Test strip", "[pH]", 4, 9.5, "pH"),
    )
}


def domain_uid(vendor: str) -> str:
    return f"iot:{vendor}"


def check_vendor(vendor: str) -> str:
    if not VENDOR_PATTERN.match(vendor):
        raise LoaderError(f"vendor {vendor!r}: use lower-case letters, digits, '-' or '_'")
    return vendor


def record_uid(vendor: str, account_id: str) -> str:
    return f"{domain_uid(vendor)}/Patient/{account_id}"


def device_uid(vendor: str, device_id: str) -> str:
    return f"{domain_uid(vendor)}/Device/{device_id}"


# ---------------------------------------------------------------------------------------------
# Typed rows
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    vendor: str
    account_id: str
    name: str
    family: str | None
    given: tuple[str, ...]
    gender: str | None
    birth_date: date | None
    email: str | None
    phone: str | None
    postal_code: str | None
    city: str | None
    address_line: str | None

    @property
    def record_uid(self) -> str:
        return record_uid(self.vendor, self.account_id)


@dataclass(frozen=True, slots=True)
class DeviceRow:
    vendor: str
    device_id: str
    account_id: str
    kind: str | None
    model: str | None
    manufacturer: str | None
    registered: datetime | None


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one metric from one device at one second (``time``: epoch seconds, UTC)."""

    vendor: str
    account_id: str
    device_id: str
    metric: Metric
    time: int
    value: float

    @property
    def domain(self) -> str:
        return domain_uid(self.vendor)

    @property
    def record_uid(self) -> str:
        return record_uid(self.vendor, self.account_id)

    @property
    def device_uid(self) -> str:
        return device_uid(self.vendor, self.device_id)

    @property
    def series_uid(self) -> str:
        return f"{self.domain}/Series/{self.device_id}/{self.metric.key}"


@dataclass(frozen=True, slots=True)
class Rejected:
    location: str
    reason: str
    line: str


@dataclass(slots=True)
class IotFiles:
    accounts: list[Path] = field(default_factory=list)
    devices: list[Path] = field(default_factory=list)
    readings: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.accounts) + len(self.devices) + len(self.readings)


def discover_iot(paths: Sequence[Path]) -> IotFiles:
    """Sort input files by kind (from their names); folders are searched recursively."""
    found = IotFiles()
    for root in paths:
        if not root.exists():
            raise LoaderError(f"{root}: no such file or directory")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            name = path.name.lower()
            if name.startswith("accounts") and path.suffix == ".ndjson":
                found.accounts.append(path)
            elif name.startswith("devices") and path.suffix == ".ndjson":
                found.devices.append(path)
            elif name.startswith("readings") and path.suffix in {".ndjson", ".csv"}:
                found.readings.append(path)
            elif root.is_file():
                raise LoaderError(
                    f"{path}: not an IoT export (accounts*.ndjson, devices*.ndjson, "
                    "readings*.ndjson or readings*.csv)"
                )
    return found


# ---------------------------------------------------------------------------------------------
# Parsing one record
# ---------------------------------------------------------------------------------------------


def _text(obj: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = obj.get(name)
    if value is None or value == "":
        if required:
            raise ReadingError(f"missing required field {name!r}")
        return None
    if not isinstance(value, str | int):
        raise ReadingError(f"{name} must be a string")
    return str(value).strip() or None


def _required(obj: Mapping[str, Any], name: str) -> str:
    value = _text(obj, name, required=True)
    assert value is not None
    return value


def parse_time(value: Any, name: str = "time") -> datetime:
    if not isinstance(value, str) or not value:
        raise ReadingError(f"missing required field {name!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise ReadingError(f"{name}={value!r} is not an ISO-8601 date-time") from e
    if parsed.tzinfo is None:
        raise ReadingError(f"{name}={value!r} has no UTC offset")
    return parsed.astimezone(UTC)


def parse_reading(obj: Mapping[str, Any], vendor: str) -> Reading:
    """One reading from a decoded NDJSON line or CSV row; raises :class:`ReadingError`."""
    key = _required(obj, "metric")
    metric = METRICS.get(key)
    if metric is None:
        raise ReadingError(f"unknown metric {key!r} (known: {', '.join(sorted(METRICS))})")
    unit = _required(obj, "unit")
    if not metric.accepts(unit):
        raise ReadingError(f"unit {unit!r} does not match {key} (expected {metric.unit!r})")
    raw = obj.get("value")
    try:
        if isinstance(raw, bool) or raw is None or raw == "":
            raise ValueError
        value = float(raw)
    except (TypeError, ValueError) as e:
        raise ReadingError(f"value {raw!r} is not a number") from e
    if not math.isfinite(value) or not metric.low <= value <= metric.high:
        raise ReadingError(f"value {value:g} outside {metric.low:g}..{metric.high:g} for {key}")
    when = parse_time(obj.get("time"))
    return Reading(
        vendor=vendor,
        account_id=_required(obj, "account"),
        device_id=_required(obj, "device"),
        metric=metric,
        time=int(when.timestamp()),
        value=value,
    )


_GENDERS = {"m": "male", "male": "male", "f": "female", "female": "female", "other": "other"}


def parse_account(obj: Mapping[str, Any], vendor: str) -> Account:
    account_id = _required(obj, "id")
    name = _required(obj, "name")
    parts = name.split()
    birth: date | None = None
    if (raw := _text(obj, "birthDate")) is not None:
        try:
            birth = date.fromisoformat(raw[:10])
        except ValueError as e:
            raise ReadingError(f"birthDate={raw!r} is not an ISO date") from e
    gender = _text(obj, "gender")
    return Account(
        vendor=vendor,
        account_id=account_id,
        name=name,
        family=parts[-1] if len(parts) > 1 else None,
        given=tuple(parts[:-1]) if len(parts) > 1 else tuple(parts),
        gender=_GENDERS.get(gender.lower(), "unknown") if gender else None,
        birth_date=birth,
        email=_text(obj, "email"),
        phone=_text(obj, "phone"),
        postal_code=_text(obj, "postalCode"),
        city=_text(obj, "city"),
        address_line=_text(obj, "addressLine"),
    )


def parse_device(obj: Mapping[str, Any], vendor: str) -> DeviceRow:
    registered = obj.get("registered")
    return DeviceRow(
        vendor=vendor,
        device_id=_required(obj, "id"),
        account_id=_required(obj, "account"),
        kind=_text(obj, "type"),
        model=_text(obj, "model"),
        manufacturer=_text(obj, "manufacturer"),
        registered=parse_time(registered, "registered") if registered else None,
    )


# ---------------------------------------------------------------------------------------------
# Parsing files and streams
# ---------------------------------------------------------------------------------------------


def parse_ndjson_lines(
    lines: Iterable[bytes], *, source: str, vendor: str, start: int = 1
) -> Iterator[tuple[str, Mapping[str, Any] | Rejected]]:
    """Decode NDJSON lines: (``source:line``, object or :class:`Rejected`); blanks skipped."""
    for lineno, line in enumerate(lines, start=start):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            yield where, Rejected(where, f"malformed JSON: {e}", _shown(line))
            continue
        if not isinstance(obj, dict):
            yield where, Rejected(where, "not a JSON object", _shown(line))
            continue
        yield where, obj


def _shown(line: bytes | str) -> str:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    return text.rstrip("\r\n")[:2000]


def parse_reading_lines(
    lines: Iterable[bytes], *, source: str, vendor: str, start: int = 1
) -> Iterator[tuple[str, Reading | Rejected]]:
    """(``source:line``, reading) from NDJSON lines (a file or an HTTP body); bad lines come
    as :class:`Rejected`."""
    for where, obj in parse_ndjson_lines(lines, source=source, vendor=vendor, start=start):
        if isinstance(obj, Rejected):
            yield where, obj
            continue
        try:
            yield where, parse_reading(obj, vendor)
        except ReadingError as why:
            yield where, Rejected(where, str(why), _shown(orjson.dumps(obj)))


def parse_readings_file(path: Path, *, vendor: str) -> Iterator[tuple[str, Reading | Rejected]]:
    if path.suffix == ".csv":
        yield from _parse_readings_csv(path, vendor)
        return
    with path.open("rb") as fh:
        yield from parse_reading_lines(fh, source=str(path), vendor=vendor)


_CSV_COLUMNS = ("account", "device", "metric", "time", "value", "unit")


def _parse_readings_csv(path: Path, vendor: str) -> Iterator[tuple[str, Reading | Rejected]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        columns = [h.strip() for h in header]
        missing = [c for c in _CSV_COLUMNS if c not in columns]
        if missing:
            where = f"{path}:1"
            yield where, Rejected(where, f"CSV header lacks {', '.join(missing)}", _csv(header))
            return
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                yield (
                    where,
                    Rejected(where, f"{len(row)} cells, header has {len(columns)}", _csv(row)),
                )
                continue
            try:
                yield where, parse_reading(dict(zip(columns, row, strict=True)), vendor)
            except ReadingError as why:
                yield where, Rejected(where, str(why), _csv(row))


def _csv(row: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    return buf.getvalue().rstrip("\r\n")


def parse_accounts_file(path: Path, *, vendor: str) -> Iterator[Account | Rejected]:
    with path.open("rb") as fh:
        for where, obj in parse_ndjson_lines(fh, source=str(path), vendor=vendor):
            if isinstance(obj, Rejected):
                yield obj
                continue
            try:
                yield parse_account(obj, vendor)
            except ReadingError as why:
                yield Rejected(where, str(why), _shown(orjson.dumps(obj)))


def parse_devices_file(path: Path, *, vendor: str) -> Iterator[DeviceRow | Rejected]:
    with path.open("rb") as fh:
        for where, obj in parse_ndjson_lines(fh, source=str(path), vendor=vendor):
            if isinstance(obj, Rejected):
                yield obj
                continue
            try:
                yield parse_device(obj, vendor)
            except ReadingError as why:
                yield Rejected(where, str(why), _shown(orjson.dumps(obj)))


# ---------------------------------------------------------------------------------------------
# Accounts and devices as a graph batch (readings have their own writer: graph/readings.py)
# ---------------------------------------------------------------------------------------------


def accounts_batch(
    vendor: str, accounts: Iterable[Account], devices: Iterable[DeviceRow]
) -> tuple[GraphBatch, dict[str, set[str]]]:
    """The Domain, Patient records (one per account, per loaders/patient_record.py's contract)
    and Device facts, plus the change-feed map (record uid -> kinds of data written)."""
    batch = GraphBatch()
    domain = domain_uid(vendor)
    add_domain(batch, domain, f"{vendor} cloud", DomainKind.IOT_CLOUD)
    changes: dict[str, set[str]] = {}
    for a in accounts:
        add_record(
            batch,
            domain,
            a.account_id,
            name=a.name,
            family=a.family,
            given=list(a.given),
            gender=a.gender,
            birth_date=a.birth_date,
            postal_code=a.postal_code,
            city=a.city,
            address_line=a.address_line,
            phone=a.phone,
            email=a.email,
        )
        changes.setdefault(a.record_uid, set()).add(RECORD_KIND)
    for d in devices:
        uid = device_uid(vendor, d.device_id)
        owner = record_uid(vendor, d.account_id)
        batch.node(
            Label.DEVICE,
            uid,
            {
                "recordId": d.device_id,
                "sourceDomain": domain,
                "sourceRecordId": d.device_id,
                "resourceType": "Device",
                "name": d.model,
                "type": d.kind,
                "manufacturer": d.manufacturer,
                "status": "active",
                "date": d.registered,
            },
        )
        batch.rel(RelType.ABOUT, (Label.DEVICE, uid), (Label.PATIENT, owner))
        changes.setdefault(owner, set()).add(Label.DEVICE.value)
    return batch, changes
