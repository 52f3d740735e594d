"""Posts and messages from problem-oriented patient communities -> typed graph batches.

Input: NDJSON, one post or message per line (``medshadow-social/1``)::

    {"id": "p-881", "community": "Diabetes Forum", "kind": "post",
     "author": {"handle": "della_h", "displayName": "Della H.", "birthDate": "1966-12-24",
                "gender": "female", "city": "Boston", "email": "della@example.org"},
     "time": "2025-11-03T19:12:00Z", "text": "...", "thread": "t-17", "inReplyTo": "p-870"}

Each community is a Domain ``social:<community>`` (kind SOCIAL_CHANNEL); each author a
domain-local Patient record (``social:<community>/Patient/<handle>``) with whatever
demographics the profile shows; each post a ``Document`` (``documentKind`` ``post`` or
``message``) ``ABOUT`` its author's record, with the text stored verbatim (facts are extracted
from it later). ``inReplyTo`` keeps the replied-to post's id, ``inReplyToUid`` its node uid.
A bad line is quarantined with file, line and field; the file's other lines load.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from loaders import patient_record as pr
from loaders.errors import LoaderError
from loaders.fhir import ParsedUnit, Quarantined
from loaders.patient_record import InvalidField
from ontology.model import DomainKind, Label, RelType

FORMAT = "medshadow-social/1"
DOMAIN_PREFIX = "social:"
POST_KINDS = ("post", "message")

#: "Della Hettinger" reads as given + family; "Della H." or "sweetpea72" does not.
_FULL_NAME = re.compile(r"^(?P<given>[^\W\d_]{2,})\s+(?P<family>[^\W\d_][^\W\d_'-]+)$")


def community_domain(community: str) -> str:
    return DOMAIN_PREFIX + pr.slug(community)


def discover(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for root in paths:
        if not root.exists():
            raise LoaderError(f"{root}: no such file or directory")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        found += [p for p in files if p.suffix == ".ndjson"]
    return found


def parse_paths(paths: Sequence[Path]) -> Iterator[ParsedUnit]:
    for path in discover(paths):
        yield parse_file(path)


def parse_file(path: Path) -> ParsedUnit:
    """One unit per file: every community the file's lines name, their authors and posts."""
    unit = ParsedUnit(source=str(path), domain="")
    domains: set[str] = set()
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                unit.quarantined.append(
                    Quarantined(where, "Post", None, f"malformed JSON: {e}", line.decode())
                )
                continue
            scratch = ParsedUnit(source=where, domain="")
            try:
                kind, domain = add_post(scratch, doc)
            except InvalidField as e:
                post_id = doc.get("id") if isinstance(doc, dict) else None
                unit.quarantined.append(
                    Quarantined(
                        f"{where}#{e.field}",
                        "Post",
                        post_id if isinstance(post_id, str) else None,
                        str(e),
                        doc,
                    )
                )
                continue
            unit.batch.extend(scratch.batch)
            unit.parsed[kind] += 1
            domains.add(domain)
    unit.domain = ",".join(sorted(domains))
    return unit


@dataclass(frozen=True, slots=True)
class _Author:
    handle: str
    display_name: str | None


def add_post(unit: ParsedUnit, doc: Any) -> tuple[str, str]:
    """Add one post/message line to ``unit.batch``; returns (kind, domain uid)."""
    if not isinstance(doc, dict):
        raise InvalidField("line", "not a JSON object")
    fmt = doc.get("format", FORMAT)
    if fmt != FORMAT:
        raise InvalidField("format", f"{fmt!r} is not {FORMAT!r}")
    post_id = pr.required_text(doc, "id", "")
    community = pr.required_text(doc, "community", "")
    domain = community_domain(community)
    if domain == DOMAIN_PREFIX:
        raise InvalidField("community", f"{community!r} is not a community name")
    kind = (pr.text(doc, "kind", "") or "post").lower()
    if kind not in POST_KINDS:
        raise InvalidField("kind", f"{kind!r} is not one of {', '.join(POST_KINDS)}")
    text = doc.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidField("text", "missing required field")
    date = pr.instant(doc, "time", "", required=True)
    thread = pr.text(doc, "thread", "")
    reply_to = pr.text(doc, "inReplyTo", "")
    author = _author(unit, doc.get("author"), domain, community)

    batch = unit.batch
    record = pr.record_uid(domain, author.handle)
    uid = pr.fact_uid(domain, Label.DOCUMENT, post_id)
    batch.node(
        Label.DOCUMENT,
        uid,
        {
            "recordId": post_id,
            "sourceRecordId": post_id,
            "sourceDomain": domain,
            "resourceType": "Post",
            "documentKind": kind,
            "community": community,
            "author": author.handle,
            "authorName": author.display_name,
            "text": text,  # verbatim: extraction works on exactly what the patient wrote
            "contentType": "text/plain",
            "date": date,
            "thread": thread,
            "inReplyTo": reply_to,
            "inReplyToUid": pr.fact_uid(domain, Label.DOCUMENT, reply_to) if reply_to else None,
            "patientReported": True,
        },
    )
    batch.rel(RelType.ABOUT, (Label.DOCUMENT, uid), (Label.PATIENT, record))
    return kind, domain


def _author(unit: ParsedUnit, raw: Any, domain: str, community: str) -> _Author:
    if not isinstance(raw, dict):
        raise InvalidField("author", "missing required object")
    handle = pr.required_text(raw, "handle", "author.")
    display = pr.text(raw, "displayName", "author.")
    given: list[str] = []
    family = None
    match = _FULL_NAME.match(display or "")
    if match:
        given, family = [match["given"]], match["family"]
    pr.add_domain(unit.batch, domain, community, DomainKind.SOCIAL_CHANNEL)
    pr.add_record(
        unit.batch,
        domain,
        handle,
        name=display or handle,
        family=family,
        given=given,
        gender=pr.gender(raw, "gender", "author."),
        birth_date=pr.day(raw, "birthDate", "author."),
        city=pr.text(raw, "city", "author."),
        email=pr.text(raw, "email", "author."),
        extra={"handle": handle},
    )
    return _Author(handle, display)
