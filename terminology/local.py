"""A clinic's local code list (CSV or JSON) as that domain's own code system.

Columns / keys: ``code`` and ``display`` (required), ``description``, ``unit``, ``frequency``
(optional). Names may be in any language; one that is mostly Cyrillic becomes a Russian
designation as well as the display. The system URL is the one the clinic's records carry
(e.g. ``urn:medshadow:local:<org>:dx``), so the concepts are the very nodes the FHIR loader made
from those records. Bad rows (no code, no display, a repeated code, a frequency that is not a
whole number) are reported with file and line; the good ones load.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from terminology.model import (
    CodeSystemInfo,
    ConceptRecord,
    Designation,
    ParsedSystem,
    PropertyValue,
    SourceProblem,
    TerminologyError,
)


def language_of(text: str) -> str:
    """``ru`` when most letters are Cyrillic, else ``en`` (what a local list mixes)."""
    letters = [ch for ch in text if ch.isalpha()]
    cyrillic = sum(1 for ch in letters if "\u0400" <= ch <= "\u04ff")
    return "ru" if letters and cyrillic * 2 >= len(letters) else "en"


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TerminologyError(f"{path}: not a JSON code list: {e}") from e
        items = data.get("codes") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise TerminologyError(f'{path}: expected a list of codes (or {{"codes": [...]}})')
        return [(i + 1, item if isinstance(item, dict) else {}) for i, item in enumerate(items)]
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"code", "display"} <= set(reader.fieldnames):
                raise TerminologyError(f"{path}: a code list needs the columns code and display")
            return [(reader.line_num, dict(row)) for row in reader]
    except (OSError, UnicodeDecodeError) as e:
        raise TerminologyError(f"{path}: cannot read the code list: {e}") from e


def parse_local_codes(
    path: Path, *, system: str, version: str = "1", name: str | None = None
) -> ParsedSystem:
    """Parse ``path`` into the local code system ``system`` (version ``version``).

    Raises:
        TerminologyError: the file cannot be read or lacks the code / display columns.
    """
    info = CodeSystemInfo(
        url=system,
        version=version,
        name=name or system.rsplit(":", 1)[-1],
        title=f"local code list {path.name}",
        source=str(path),
        licence="the clinic's own list",
        content="complete",
        hierarchical=False,
        note="a clinic's local codes; map them with the mapping workbench",
    )
    parsed = ParsedSystem(info)
    seen: set[str] = set()
    for line, row in _rows(Path(path)):
        code = str(row.get("code") or "").strip()
        display = str(row.get("display") or "").strip()
        where = (str(path), line)
        if not code:
            parsed.problems.append(SourceProblem(*where, None, "no code"))
            continue
        if not display:
            parsed.problems.append(SourceProblem(*where, code, "no display"))
            continue
        if code in seen:
            parsed.problems.append(SourceProblem(*where, code, "code listed twice"))
            continue
        props: dict[str, PropertyValue] = {}
        for key in ("description", "unit"):
            value = str(row.get(key) or "").strip()
            if value:
                props[key] = value
        frequency = str(row.get("frequency") or "").strip()
        if frequency:
            if not frequency.isdigit():
                parsed.problems.append(
                    SourceProblem(*where, code, f"frequency {frequency!r} is not a whole number")
                )
                continue
            props["frequency"] = int(frequency)
        seen.add(code)
        language = language_of(display)
        designations = (Designation(display, language, "display"),) if language != "en" else ()
        parsed.concepts.append(
            ConceptRecord(code, display, designations=designations, properties=props)
        )
    return parsed
