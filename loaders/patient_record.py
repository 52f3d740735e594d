"""The identity contract of every non-MIS domain: a Domain node and domain-local Patient records.

A domain (a portal, an IoT cloud, a patient community) knows a person only through its own
record: uid ``<domain uid>/Patient/<local id>``, the demographics that domain has, ``IN_DOMAIN``
its Domain. Nothing here creates a Person: the master patient index links records to persons
after the load. Facts hang off the record with ``ABOUT`` and carry their provenance.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import orjson

from loaders.errors import LoaderError
from ontology.model import DomainKind, Label, RelType
from ontology.records import GraphBatch

#: Data kind reported for a record whose demographics changed (beside the fact labels).
RECORD_KIND = Label.PATIENT.value

_SLUG_UNSAFE = re.compile(r"[^a-z0-9_.-]+")


def slug(text: str) -> str:
    """A domain-safe key: ``"Diabetes Forum"`` -> ``"diabetes-forum"``."""
    return _SLUG_UNSAFE.sub("-", text.strip().lower()).strip("-")


def record_uid(domain: str, local_id: str) -> str:
    return f"{domain}/Patient/{local_id}"


def fact_uid(domain: str, label: Label, local_id: str) -> str:
    return f"{domain}/{label.value}/{local_id}"


def content_id(value: Any) -> str:
    """A stable id for an entry that has none: a hash of its canonical JSON."""
    raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    return "h" + hashlib.sha256(raw).hexdigest()[:20]


def add_domain(batch: GraphBatch, uid: str, name: str, kind: DomainKind) -> None:
    batch.node(Label.DOMAIN, uid, {"name": name, "kind": kind.value})


def add_record(
    batch: GraphBatch,
    domain: str,
    local_id: str,
    *,
    name: str | None = None,
    family: str | None = None,
    given: list[str] | None = None,
    gender: str | None = None,
    birth_date: date | None = None,
    national_id: str | None = None,
    postal_code: str | None = None,
    city: str | None = None,
    address_line: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The domain-local Patient record (contract of the master patient index) and its IN_DOMAIN."""
    uid = record_uid(domain, local_id)
    if name is None and (given or family):
        name = " ".join([*(given or []), *([family] if family else [])])
    batch.node(
        Label.PATIENT,
        uid,
        {
            "recordId": local_id,
            "sourceDomain": domain,
            "name": name,
            "family": family,
            "given": list(given or []),
            "gender": gender,
            "birthDate": birth_date,
            "nationalId": national_id,
            "postalCode": postal_code,
            "city": city,
            "addressLine": address_line,
            "phone": phone,
            "email": email,
            **(extra or {}),
        },
    )
    batch.rel(RelType.IN_DOMAIN, (Label.PATIENT, uid), (Label.DOMAIN, domain))
    return uid


def changes_of(batch: GraphBatch) -> dict[str, set[str]]:
    """Which Patient records a batch touches, with the kinds of data (labels) it writes for them.

    The shape the change feed takes (record uid -> {"Observation", ...}).
    """
    changes: dict[str, set[str]] = {}
    for row in batch.rel_rows():
        if row.type is RelType.ABOUT and row.end_label is Label.PATIENT:
            changes.setdefault(row.end, set()).add(row.start_label.value)
    for node in batch.node_rows():
        if node.label is Label.PATIENT:
            changes.setdefault(node.uid, set()).add(RECORD_KIND)
    return changes


def merge_changes(into: dict[str, set[str]], more: Mapping[str, set[str]]) -> None:
    for uid, kinds in more.items():
        into.setdefault(uid, set()).update(kinds)


# ---------------------------------------------------------------------------------------------
# Field validation shared by the patient-facing loaders (and the portal's GraphQL writes)
# ---------------------------------------------------------------------------------------------


class InvalidField(LoaderError):
    """One field of an input item is missing or malformed; ``field`` is its path in the item."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[InvalidField], tuple[str, str]]:
        return (type(self), (self.field, self.message))


def text(item: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidField(f"{where}{key}", "missing required field")
        return None
    if not isinstance(value, str):
        raise InvalidField(f"{where}{key}", f"expected a string, got {type(value).__name__}")
    return value.strip()


def required_text(item: Mapping[str, Any], key: str, where: str) -> str:
    value = text(item, key, where, required=True)
    assert value is not None  # text() raised otherwise
    return value


def instant(
    item: Mapping[str, Any], key: str, where: str, *, required: bool = False
) -> datetime | None:
    """An ISO date-time (a date alone means its midnight); without a zone it is UTC."""
    raw = text(item, key, where, required=required)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as e:
        raise InvalidField(f"{where}{key}", f"{raw!r} is not an ISO date-time") from e
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def day(item: Mapping[str, Any], key: str, where: str) -> date | None:
    raw = text(item, key, where)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError as e:
        raise InvalidField(f"{where}{key}", f"{raw!r} is not an ISO date") from e


def gender(item: Mapping[str, Any], key: str, where: str) -> str | None:
    raw = text(item, key, where)
    if raw is None:
        return None
    value = _GENDERS.get(raw.lower())
    if value is None:
        allowed = ", ".join(sorted(set(_GENDERS.values())))
        raise InvalidField(f"{where}{key}", f"{raw!r} is not one of {allowed}")
    return value


_GENDERS = {
    "female": "female",
    "f": "female",
    "male": "male",
    "m": "male",
    "other": "other",
    "unknown": "unknown",
}
