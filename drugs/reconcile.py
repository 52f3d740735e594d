"""One medication list from every domain's records.

Each medication record (a clinic's ``MedicationRequest``, a patient's ``MedicationStatement``)
is normalised to its ingredients; records with the same ingredients are one item whatever their
wording ("Simvastatin 20 MG Oral Tablet" from a clinic, "simvastatin 20 mg" from the portal).
Per item and domain the newest record speaks for the domain. Disagreements stay visible as
``conflicts``: one domain says stopped while another has it active, or the strengths differ.
Records whose name matches no ingredient are kept as their own items (flagged unresolved), never
dropped."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from drugs.model import MedItem, MedSource
from drugs.names import DrugDictionary, fold

_STRENGTH = re.compile(
    r"(\d+(?:[.,]\d+)?)\s*(mg|mcg|µg|ug|g|ml|unt|iu|meq|%)(?:/(ml|actuat|hr))?\b"
)


def strength(*texts: str | None) -> str | None:
    """The first strength written in any of ``texts`` ("325 MG" -> "325 mg")."""
    for text in texts:
        if not text:
            continue
        m = _STRENGTH.search(fold(text))
        if m:
            value = m.group(1).replace(",", ".")
            if "." in value:  # "21.70" and "21,7" are both "21.7"
                value = value.rstrip("0").rstrip(".")
            unit = m.group(2) + (f"/{m.group(3)}" if m.group(3) else "")
            return f"{value} {unit}"
    return None


def _day(t: int | None) -> str:
    return datetime.fromtimestamp(t, UTC).date().isoformat() if t is not None else "undated"


def source_of(row: Mapping[str, Any]) -> MedSource:
    display = row.get("display") or row.get("conceptDisplay") or row.get("code") or row["uid"]
    return MedSource(
        record=row["uid"],
        kind=row["kind"],
        domain=row.get("domain") or "unknown",
        domain_kind=row.get("domainKind"),
        domain_name=row.get("domainName"),
        status=str(row.get("status") or "unknown"),
        at=row.get("t"),
        display=str(display),
        strength=strength(row.get("dose"), row.get("display"), row.get("conceptDisplay")),
        patient_reported=bool(row.get("patientReported")),
        code=f"{row['system']}|{row['code']}" if row.get("system") and row.get("code") else None,
        note=row.get("note"),
    )


def ingredients_of(dictionary: DrugDictionary, row: Mapping[str, Any]) -> tuple[str, ...]:
    """Ingredients from the coded concept's name, its standard mappings, then the record's own
    wording (a portal entry typed by the patient)."""
    texts = [row.get("conceptDisplay"), *(row.get("mappedDisplays") or ()), row.get("display")]
    for text in texts:
        if text:
            found = dictionary.ingredients(str(text))
            if found:
                return tuple(sorted(i.name for i in found))
    return ()


def reconcile(dictionary: DrugDictionary, rows: Iterable[Mapping[str, Any]]) -> list[MedItem]:
    """The reconciled list of active items (an item only some domain stopped keeps its stopped
    sources, shown as a conflict); ``rows`` as :data:`graph.drugs.PERSON_MEDICATIONS` returns
    them, oldest first."""
    latest: dict[tuple[str, str], tuple[MedSource, tuple[str, ...]]] = {}
    for row in rows:
        ingredients = ingredients_of(dictionary, row)
        src = source_of(row)
        key = "+".join(ingredients) if ingredients else "unresolved:" + _words(src.display)
        latest[(key, src.domain)] = (src, ingredients)  # rows are oldest first: newest wins
    grouped: dict[str, list[tuple[MedSource, tuple[str, ...]]]] = {}
    for (key, _domain), value in latest.items():
        grouped.setdefault(key, []).append(value)
    items = []
    for key, members in grouped.items():
        sources = sorted((s for s, _ in members), key=lambda s: (not s.active, -(s.at or 0)))
        if not any(s.active for s in sources):
            continue
        ingredients = members[0][1]
        display = (
            ", ".join(dictionary.display_names(ingredients)) if ingredients else sources[0].display
        )
        item = MedItem(key=key, display=display, ingredients=ingredients, sources=sources)
        item.conflicts = conflicts(item)
        items.append(item)
    return sorted(items, key=lambda i: i.display.lower())


def conflicts(item: MedItem) -> list[str]:
    out = []
    active = [s for s in item.sources if s.active]
    for s in item.sources:
        if not s.active:
            others = ", ".join(sorted({a.domain for a in active}))
            note = f" ({s.note})" if s.note else ""
            out.append(
                f"{s.domain} records it as {s.status} on {_day(s.at)}{note} while {others} "
                "has it active"
            )
    strengths = {s.strength for s in active if s.strength}
    if len(strengths) > 1:
        each = "; ".join(f"{s.strength} ({s.domain})" for s in active if s.strength)
        out.append(f"strengths differ between sources: {each}")
    return out


def _words(text: str) -> str:
    return " ".join(w for w in fold(text).split() if not re.match(r"^[\d.,/]+$", w))
