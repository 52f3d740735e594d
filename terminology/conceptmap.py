"""Published mappings as documents: FHIR R4 ConceptMap JSON and SSSOM TSV, both ways.

A :class:`ConceptMapDoc` is one versioned map from one source code system to one target code
system; each :class:`MapElement` is one source code → one target (or "no target"). Both formats
round-trip every field exactly (``from_fhir(to_fhir(doc)) == doc``, ``from_sssom(to_sssom(doc))
== doc``). Reading is all-or-nothing: a ConceptMap is published as a whole, so any bad row raises
:class:`ConceptMapError` listing every problem found (the first 20 in the message) with where it is.

FHIR R4 ConceptMap (``to_fhir`` / ``from_fhir``)
    ``id`` and ``url`` carry the machine name (``urn:medshadow:conceptmap:<name>`` unless the
    doc has its own ``url``); ``name`` is derived from it to meet FHIR's name rule
    (``org-12-dx-to-snomed`` → ``Org12DxToSnomed``). ``sourceUri``/``targetUri`` (R4 allows a
    URI there; the system URL stands for all its codes) and one ``group`` carry the two systems.
    Consecutive elements with the same source code and display share one ``element`` with
    several ``target``s. An unmatched row is a target with ``equivalence: unmatched`` and no code.
    Provenance sits in a complex extension on the target, ``PROVENANCE_EXTENSION``, with the
    sub-extensions ``method`` (valueString), ``confidence`` (valueDecimal), ``reviewer``
    (valueString) and ``reviewedAt`` (valueDateTime). FHIR invariant cmd-1 wants a comment on
    every ``narrower``/``inexact`` target: when the doc has none, a short generic one is written
    and marked with the sub-extension ``commentGenerated`` (valueBoolean), which ``from_fhir``
    drops again. Reading also accepts maps of other tools: several groups (only when they all
    map the same source to the same target system), elements with several targets (one
    MapElement each), an element without targets (read as unmatched), the R4 codes
    ``relatedto``/``subsumes``/``specializes`` (read as inexact/wider/narrower), a map without
    ``version`` (version ``1``). ``disjoint``, ``dependsOn``/``product`` and ``group.unmapped``
    change what a map means and are refused.

SSSOM TSV (``to_sssom`` / ``from_sssom``; https://mapping-commons.github.io/sssom/)
    A ``#``-prefixed YAML metadata block, then the TSV. Codes are CURIEs with one prefix per
    system (``SCTID``, ``LOINC``, ``ICD10``, ``ICD10CM``, ``RXNORM``; a local
    ``urn:medshadow:local:org-12:dx`` becomes ``LOCAL_ORG_12_DX``); characters a CURIE cannot
    hold (space, ``|``, ``%``, ``#``…) are percent-encoded. ``subject_source``/``object_source``
    are the CURIEs ``<PREFIX>_SYSTEM:`` whose ``curie_map`` entry is exactly the system URL.
    Equivalence ↔ predicate (``EQUIVALENCE_PREDICATES``), the one table both ways:

    ============  ===================================================
    equal         owl:equivalentClass
    equivalent    skos:exactMatch
    wider         skos:broadMatch   (the target is broader)
    narrower      skos:narrowMatch  (the target is narrower)
    inexact       skos:relatedMatch (HL7's R4 inexact → R5 related-to)
    unmatched     skos:exactMatch with object_id ``sssom:NoTermFound``
    ============  ===================================================

    Read only: ``skos:closeMatch`` → inexact, ``rdfs:subClassOf`` → wider. Other columns:
    ``mapping_tool`` = method; ``mapping_justification`` = ``semapv:ManualMappingCuration`` when a
    reviewer approved the row, else by method (lexical → LexicalMatching, embedding/semantic/LLM →
    SemanticSimilarityThresholdMatching, both → CompositeMatching, ``manual`` →
    ManualMappingCuration, a ``semapv:`` method as itself, otherwise UnspecifiedMatching);
    ``reviewer_id`` = ``medshadow_user:<reviewer>``; ``mapping_date`` = the date of
    ``reviewed_at`` (SSSOM dates are dates), with the full timestamp in the declared extension
    column ``reviewed_at`` when it has a time. The set's publication time is ``publication_date``
    (its date) plus the extension slot ``published_at``; the machine name and the status are
    the extension slots ``conceptmap_name`` and ``conceptmap_status``; the publisher is
    ``creator_label``; ``license`` is SSSOM's "unspecified" URL (a doc carries no licence).
    Reading files of other tools: a set-level ``mapping_tool`` is propagated to the rows;
    without ``mapping_tool`` a justification other than the one derived above becomes the
    method; a reviewer may come from ``reviewer_label``, or from ``author_id`` of a manually
    curated row; a set without ``mapping_set_version`` is version ``1``; without
    ``subject_source``/``object_source`` the system comes from the CURIE prefix. A set-level
    ``mapping_date`` is not propagated into ``reviewed_at`` (it says when mappings were
    asserted, not reviewed).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

from terminology.model import ICD10, ICD10CM, LOINC, RXNORM, SNOMED, TerminologyError

__all__ = [
    "EQUIVALENCES",
    "EQUIVALENCE_PREDICATES",
    "PROVENANCE_EXTENSION",
    "ConceptMapDoc",
    "ConceptMapError",
    "MapElement",
    "MapProblem",
    "default_url",
    "fhir_name",
    "from_fhir",
    "from_sssom",
    "read_concept_map",
    "to_fhir",
    "to_sssom",
    "write_concept_map",
]

EQUIVALENCES: tuple[str, ...] = (
    "equal",
    "equivalent",
    "wider",
    "narrower",
    "inexact",
    "unmatched",
)
STATUSES: tuple[str, ...] = ("draft", "active", "retired", "unknown")
PROVENANCE_EXTENSION = "urn:medshadow:fhir:StructureDefinition/mapping-provenance"
DEFAULT_URL_PREFIX = "urn:medshadow:conceptmap:"
#: How many problems a ConceptMapError spells out; all of them are in ``.problems``.
MAX_LISTED_PROBLEMS = 20

EQUIVALENCE_PREDICATES: dict[str, str] = {
    "equal": "owl:equivalentClass",
    "equivalent": "skos:exactMatch",
    "wider": "skos:broadMatch",
    "narrower": "skos:narrowMatch",
    "inexact": "skos:relatedMatch",
    "unmatched": "skos:exactMatch",  # with object_id sssom:NoTermFound
}
_PREDICATE_EQUIVALENCES: dict[str, str] = {
    "owl:equivalentClass": "equal",
    "skos:exactMatch": "equivalent",
    "skos:broadMatch": "wider",
    "skos:narrowMatch": "narrower",
    "skos:relatedMatch": "inexact",
    "skos:closeMatch": "inexact",
    "rdfs:subClassOf": "wider",
}
#: R4 equivalence codes outside EQUIVALENCES that mean one of ours.
_R4_ALIASES = {"relatedto": "inexact", "subsumes": "wider", "specializes": "narrower"}
#: cmd-1: a narrower or inexact target needs a comment; this one is marked as generated.
_GENERATED_COMMENTS = {
    "narrower": "The target is narrower than the source (no curator comment).",
    "inexact": "The target overlaps the source only in part (no curator comment).",
}

NO_TERM_FOUND = "sssom:NoTermFound"
SSSOM_UNSPECIFIED_LICENSE = "https://w3id.org/sssom/license/unspecified"
SSSOM_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "subject_label",
    "predicate_id",
    "object_id",
    "object_label",
    "mapping_justification",
    "confidence",
    "author_id",
    "reviewer_id",
    "mapping_date",
    "comment",
    "mapping_tool",
)
_REQUIRED_COLUMNS = ("subject_id", "predicate_id", "object_id", "mapping_justification")
_MANUAL = "semapv:ManualMappingCuration"
_LEXICAL = "semapv:LexicalMatching"
_SEMANTIC = "semapv:SemanticSimilarityThresholdMatching"
_COMPOSITE = "semapv:CompositeMatching"
_UNSPECIFIED = "semapv:UnspecifiedMatching"
_BUILTIN_PREFIXES = {
    "owl": "http://www.w3.org/2002/07/owl#",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "semapv": "https://w3id.org/semapv/vocab/",
    "sssom": "https://w3id.org/sssom/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "linkml": "https://w3id.org/linkml/",
    "dcterms": "http://purl.org/dc/terms/",
    "pav": "http://purl.org/pav/",
    "prov": "http://www.w3.org/ns/prov#",
    "oboInOwl": "http://www.geneontology.org/formats/oboInOwl#",
}
#: CURIE prefixes of the systems the platform knows (name, IRI of a code = expansion + code).
_KNOWN_PREFIXES: dict[str, tuple[str, str]] = {
    SNOMED: ("SCTID", "http://snomed.info/id/"),
    LOINC: ("LOINC", "https://loinc.org/"),
    ICD10: ("ICD10", "https://icd.who.int/browse10/2019/en#/"),
    ICD10CM: ("ICD10CM", "http://hl7.org/fhir/sid/icd-10-cm/"),
    RXNORM: ("RXNORM", "http://purl.bioontology.org/ontology/RXNORM/"),
}
_SYSTEM_SUFFIX = "_SYSTEM"
_EXT_PREFIX = "medshadow"
_EXT_NAMESPACE = "urn:medshadow:sssom:"
_USER_PREFIX = "medshadow_user"
_USER_NAMESPACE = "urn:medshadow:user:"
#: extension slots: name → type hint
_SET_EXTENSIONS = {
    "conceptmap_name": "xsd:string",
    "conceptmap_status": "xsd:string",
    "published_at": "xsd:dateTime",
}
_ROW_EXTENSIONS = {"reviewed_at": "xsd:dateTime"}

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_FHIR_CODE = re.compile(r"[^\s]+( [^\s]+)*")
_FHIR_DATETIME = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
    r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
    r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
#: characters a CURIE's local part cannot carry literally (plus controls): percent-encoded
_CURIE_UNSAFE = frozenset(' \t\n\r%"<>\\^`{|}#?[]')


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class MapProblem:
    """One thing wrong with a map: where (JSON path or ``line N``; None for the whole) and what."""

    where: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class ConceptMapError(TerminologyError, ValueError):
    """A ConceptMap that cannot be read, written or built; names the source and where.

    ``source`` is the file name or ``'<input>'``; ``problems`` holds every problem found (the
    message lists the first :data:`MAX_LISTED_PROBLEMS`), each with its JSON path such as
    ``group[0].element[3].target[0]`` or its TSV ``line N``.
    """

    def __init__(self, source: str, problems: Sequence[MapProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(self._message())

    @classmethod
    def one(cls, source: str, where: str | None, message: str) -> ConceptMapError:
        return cls(source, [MapProblem(where, message)])

    def _message(self) -> str:
        if len(self.problems) == 1:
            return f"{self.source}: {self.problems[0]}"
        listed = "\n".join(f"  {p}" for p in self.problems[:MAX_LISTED_PROBLEMS])
        more = len(self.problems) - MAX_LISTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        return f"{self.source}: {len(self.problems)} problems, nothing was read:\n{listed}{tail}"


# --------------------------------------------------------------------------- the model


def _element_problems(
    source_code: object,
    target_code: object,
    equivalence: object,
    confidence: object,
    reviewed_at: object,
) -> list[str]:
    """What is wrong with one mapping row (shared by MapElement and both readers)."""
    problems: list[str] = []
    if not isinstance(source_code, str) or not _FHIR_CODE.fullmatch(source_code):
        problems.append(f"source code {source_code!r} is missing or not a valid code")
    if equivalence not in EQUIVALENCES:
        problems.append(
            f"unknown equivalence {equivalence!r} (expected one of {', '.join(EQUIVALENCES)})"
        )
    elif equivalence == "unmatched":
        if target_code is not None:
            problems.append(f"an unmatched row has no target code, found {target_code!r}")
    elif target_code is None:
        problems.append(f"target code missing for a matched ({equivalence}) row")
    elif not isinstance(target_code, str) or not _FHIR_CODE.fullmatch(target_code):
        problems.append(f"target code {target_code!r} is not a valid code")
    if confidence is not None and (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float | Decimal)
        or not math.isfinite(float(confidence))
        or not 0.0 <= float(confidence) <= 1.0
    ):
        problems.append(f"confidence {confidence!r} is not a number from 0 to 1")
    if reviewed_at is not None and not _is_datetime(reviewed_at):
        problems.append(
            f"reviewed_at {reviewed_at!r} is not an ISO 8601 date or date-time with a time zone"
        )
    return problems


def _is_datetime(value: object) -> bool:
    return isinstance(value, str) and _FHIR_DATETIME.fullmatch(value) is not None


def _none_if_empty(obj: object, names: Sequence[str]) -> None:
    for name in names:
        if getattr(obj, name) == "":
            object.__setattr__(obj, name, None)


@dataclass(frozen=True, slots=True)
class MapElement:
    """One mapping row: a source code to one target code (or to none, when unmatched).

    Empty optional strings are stored as None. Raises :class:`ConceptMapError` for an unknown
    equivalence, a missing target code on a matched row, a confidence outside 0..1 or a
    ``reviewed_at`` that is not ISO 8601 with a time zone.
    """

    source_code: str
    source_display: str | None
    target_code: str | None  # None only when equivalence == "unmatched"
    target_display: str | None
    equivalence: str  # one of EQUIVALENCES
    comment: str | None = None
    #: how the target was found, e.g. "lexical+embedding:e5+rerank", "manual"
    method: str | None = None
    confidence: float | None = None  # 0..1
    reviewer: str | None = None
    reviewed_at: str | None = None  # ISO 8601

    def __post_init__(self) -> None:
        _none_if_empty(
            self,
            ("source_display", "target_display", "comment", "method", "reviewer", "reviewed_at"),
        )
        problems = _element_problems(
            self.source_code, self.target_code, self.equivalence, self.confidence, self.reviewed_at
        )
        if problems:
            where = f"source code {self.source_code!r}"
            raise ConceptMapError("<MapElement>", [MapProblem(where, p) for p in problems])


def default_url(name: str) -> str:
    """The canonical URL of a map that has no URL of its own."""
    return DEFAULT_URL_PREFIX + name


def _doc_problems(
    *,
    name: object,
    version: object,
    source_system: object,
    target_system: object,
    status: object,
    date: object,
    url: object,
) -> list[tuple[str, str]]:
    """(field, problem) for the map-level fields."""
    problems: list[tuple[str, str]] = []
    if not isinstance(name, str) or not _FHIR_ID.fullmatch(name):
        problems.append(
            ("name", f"{name!r} is not a machine name (1-64 letters, digits, '-', '.')")
        )
    if not isinstance(version, str) or not version.strip():
        problems.append(("version", f"{version!r} is not a version"))
    for field_name, system in (("source_system", source_system), ("target_system", target_system)):
        if not isinstance(system, str) or not _ABSOLUTE_URI.fullmatch(system):
            problems.append((field_name, f"{system!r} is not an absolute URI"))
    if status not in STATUSES:
        problems.append(("status", f"{status!r} is not one of {', '.join(STATUSES)}"))
    if date is not None and not _is_datetime(date):
        problems.append(("date", f"{date!r} is not an ISO 8601 date or date-time with a time zone"))
    if url is not None and (not isinstance(url, str) or not _ABSOLUTE_URI.fullmatch(url)):
        problems.append(("url", f"{url!r} is not an absolute URI"))
    return problems


def _duplicate_problems(elements: Sequence[MapElement]) -> list[tuple[int, str]]:
    """(index, problem) for rows that repeat or contradict an earlier row."""
    problems: list[tuple[int, str]] = []
    seen: dict[tuple[str, str | None], int] = {}
    matched: dict[str, int] = {}
    unmatched: dict[str, int] = {}
    for i, el in enumerate(elements):
        key = (el.source_code, el.target_code)
        if key in seen:
            target = "no target" if el.target_code is None else f"target {el.target_code!r}"
            problems.append(
                (i, f"source {el.source_code!r} → {target} repeats row {seen[key] + 1}")
            )
            continue
        seen[key] = i
        own, other = (unmatched, matched) if el.target_code is None else (matched, unmatched)
        own.setdefault(el.source_code, i)
        if el.source_code in other:
            problems.append(
                (
                    i,
                    f"source {el.source_code!r} is both unmatched and mapped "
                    f"(rows {other[el.source_code] + 1} and {i + 1})",
                )
            )
    return problems


@dataclass(frozen=True, slots=True)
class ConceptMapDoc:
    """One published, versioned map from ``source_system`` to ``target_system``.

    ``elements`` is stored as a tuple. Raises :class:`ConceptMapError` for a name that is not
    a FHIR id, an empty version, systems or url that are not absolute URIs, an unknown status,
    a ``date`` that is not ISO 8601 with a time zone, or rows that repeat or contradict each
    other (the same source → target twice, a code both unmatched and mapped).
    """

    name: str  # machine name, e.g. "org-12-dx-to-snomed"
    version: str  # "1", "2", ...
    source_system: str  # URL/URN, e.g. "urn:medshadow:local:org-12:dx"
    target_system: str  # e.g. "http://snomed.info/sct"
    elements: tuple[MapElement, ...]
    title: str | None = None
    status: str = "active"
    publisher: str | None = None
    date: str | None = None  # ISO 8601 publication time
    url: str | None = None  # canonical, default urn:medshadow:conceptmap:<name>

    def __post_init__(self) -> None:
        _none_if_empty(self, ("title", "publisher", "date", "url"))
        object.__setattr__(self, "elements", tuple(self.elements))
        problems = [
            MapProblem(where, message)
            for where, message in _doc_problems(
                name=self.name,
                version=self.version,
                source_system=self.source_system,
                target_system=self.target_system,
                status=self.status,
                date=self.date,
                url=self.url,
            )
        ]
        bad_types = [i for i, el in enumerate(self.elements) if not isinstance(el, MapElement)]
        problems += [MapProblem(f"elements[{i}]", "is not a MapElement") for i in bad_types]
        if not bad_types:
            problems += [
                MapProblem(f"elements[{i}]", message)
                for i, message in _duplicate_problems(self.elements)
            ]
        if problems:
            raise ConceptMapError(f"<ConceptMapDoc {self.name!r}>", problems)

    @property
    def canonical_url(self) -> str:
        return self.url or default_url(self.name)


# --------------------------------------------------------------------------- FHIR


def fhir_name(name: str) -> str:
    """A FHIR ``name`` (``[A-Z][A-Za-z0-9_]*``) from a machine name: ``org-12-dx`` → ``Org12Dx``."""
    parts = re.findall(r"[A-Za-z0-9]+", name)
    camel = "".join(part[:1].upper() + part[1:] for part in parts)
    if not camel or not camel[0].isalpha():
        camel = "Map" + camel
    return camel[:255]


def _fhir_target(el: MapElement) -> dict[str, Any]:
    subs: list[dict[str, Any]] = []
    if el.method is not None:
        subs.append({"url": "method", "valueString": el.method})
    if el.confidence is not None:
        subs.append({"url": "confidence", "valueDecimal": el.confidence})
    if el.reviewer is not None:
        subs.append({"url": "reviewer", "valueString": el.reviewer})
    if el.reviewed_at is not None:
        subs.append({"url": "reviewedAt", "valueDateTime": el.reviewed_at})
    comment = el.comment
    if comment is None and el.equivalence in _GENERATED_COMMENTS:
        comment = _GENERATED_COMMENTS[el.equivalence]
        subs.append({"url": "commentGenerated", "valueBoolean": True})
    target: dict[str, Any] = {}
    if subs:
        target["extension"] = [{"url": PROVENANCE_EXTENSION, "extension": subs}]
    if el.target_code is not None:
        target["code"] = el.target_code
    if el.target_display is not None:
        target["display"] = el.target_display
    target["equivalence"] = el.equivalence
    if comment is not None:
        target["comment"] = comment
    return target


def to_fhir(doc: ConceptMapDoc) -> dict[str, Any]:
    """The doc as a FHIR R4 ConceptMap resource (a JSON-ready dict)."""
    resource: dict[str, Any] = {
        "resourceType": "ConceptMap",
        "id": doc.name,
        "url": doc.canonical_url,
        "version": doc.version,
        "name": fhir_name(doc.name),
    }
    if doc.title is not None:
        resource["title"] = doc.title
    resource["status"] = doc.status
    if doc.date is not None:
        resource["date"] = doc.date
    if doc.publisher is not None:
        resource["publisher"] = doc.publisher
    resource["sourceUri"] = doc.source_system
    resource["targetUri"] = doc.target_system
    elements: list[dict[str, Any]] = []
    for el in doc.elements:
        last = elements[-1] if elements else None
        if (
            last is not None
            and last["code"] == el.source_code
            and last.get("display") == el.source_display
        ):
            last["target"].append(_fhir_target(el))
            continue
        element: dict[str, Any] = {"code": el.source_code}
        if el.source_display is not None:
            element["display"] = el.source_display
        element["target"] = [_fhir_target(el)]
        elements.append(element)
    if elements:
        resource["group"] = [
            {"source": doc.source_system, "target": doc.target_system, "element": elements}
        ]
    return resource


class _Problems:
    """Collects problems with their location while a reader walks its input."""

    def __init__(self) -> None:
        self.items: list[MapProblem] = []

    def add(self, where: str | None, message: str) -> None:
        self.items.append(MapProblem(where, message))

    def __len__(self) -> int:
        return len(self.items)

    def string(self, obj: dict[str, Any], key: str, where: str) -> str | None:
        value = obj.get(key)
        if value is None or isinstance(value, str):
            return value
        self.add(where, f"must be a string, found {value!r}")
        return None


def _name_from_url(url: str | None) -> str | None:
    if not url:
        return None
    last = re.split(r"[/:#]", url.rstrip("/"))[-1]
    for suffix in (".sssom.tsv", ".tsv", ".json"):
        last = last.removesuffix(suffix)
    return last or None


def _as_machine_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9\-.]+", "-", text).strip("-")[:64]
    return name or "conceptmap"


def _read_provenance(target: dict[str, Any], where: str, problems: _Problems) -> dict[str, Any]:
    found: dict[str, Any] = {}
    extensions = target.get("extension") or []
    if not isinstance(extensions, list):
        problems.add(f"{where}.extension", "must be a list")
        return found
    expected = {
        "method": ("valueString", str),
        "confidence": ("valueDecimal", int | float | Decimal),
        "reviewer": ("valueString", str),
        "reviewedAt": ("valueDateTime", str),
        "commentGenerated": ("valueBoolean", bool),
    }
    for i, ext in enumerate(extensions):
        if not isinstance(ext, dict) or ext.get("url") != PROVENANCE_EXTENSION:
            continue  # another tool's extension: not ours to interpret
        subs = ext.get("extension") or []
        if not isinstance(subs, list):
            problems.add(f"{where}.extension[{i}].extension", "must be a list")
            continue
        for j, sub in enumerate(subs):
            sub_where = f"{where}.extension[{i}].extension[{j}]"
            url = sub.get("url") if isinstance(sub, dict) else None
            if not isinstance(sub, dict) or url not in expected:
                problems.add(sub_where, f"unknown provenance sub-extension {url!r}")
                continue
            key, kind = expected[url]
            value = sub.get(key)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                problems.add(sub_where, f"{url} needs {key}, found {sub!r}")
                continue
            found[url] = float(value) if url == "confidence" else value
    return found


def from_fhir(data: Any, *, source: str = "<input>") -> ConceptMapDoc:
    """Read a FHIR R4 ConceptMap (a parsed JSON object, or JSON text).

    Raises:
        ConceptMapError: not JSON, not a ConceptMap, or any bad group/element/target; every
            problem is listed with its JSON path, and nothing is returned.
    """
    if isinstance(data, str | bytes | bytearray):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            where = f"line {e.lineno} column {e.colno}"
            raise ConceptMapError.one(source, where, f"not JSON: {e.msg}") from e
    if not isinstance(data, dict):
        raise ConceptMapError.one(source, None, "not a JSON object (a FHIR ConceptMap resource)")
    if data.get("resourceType") != "ConceptMap":
        found = data.get("resourceType")
        raise ConceptMapError.one(source, "resourceType", f"expected ConceptMap, found {found!r}")
    problems = _Problems()
    rid = problems.string(data, "id", "id")
    url = problems.string(data, "url", "url")
    fname = problems.string(data, "name", "name")
    if rid is not None and not _FHIR_ID.fullmatch(rid):
        problems.add("id", f"{rid!r} is not a FHIR id")
    derived = _name_from_url(url) or fname
    name = rid or (_as_machine_name(derived) if derived else None)
    if name is None:
        problems.add(None, "no id, url or name to name the map by")
    version = problems.string(data, "version", "version") or "1"
    status = problems.string(data, "status", "status")
    if status is None:
        problems.add("status", "missing")
    title = problems.string(data, "title", "title")
    publisher = problems.string(data, "publisher", "publisher")
    date = problems.string(data, "date", "date")
    top_source = problems.string(data, "sourceUri", "sourceUri") or problems.string(
        data, "sourceCanonical", "sourceCanonical"
    )
    top_target = problems.string(data, "targetUri", "targetUri") or problems.string(
        data, "targetCanonical", "targetCanonical"
    )

    groups = data.get("group")
    if groups is None:
        groups = []
    if not isinstance(groups, list):
        problems.add("group", "must be a list")
        groups = []
    systems: tuple[str | None, str | None] | None = None
    elements: list[MapElement] = []
    wheres: list[str] = []
    for gi, group in enumerate(groups):
        gw = f"group[{gi}]"
        if not isinstance(group, dict):
            problems.add(gw, "must be an object")
            continue
        pair = (
            problems.string(group, "source", f"{gw}.source") or top_source,
            problems.string(group, "target", f"{gw}.target") or top_target,
        )
        if systems is None:
            systems = pair
        elif pair != systems:
            problems.add(
                gw,
                f"maps {pair[0]} → {pair[1]} but group[0] maps {systems[0]} → {systems[1]}: "
                "a ConceptMap here has one source and one target system",
            )
        if group.get("unmapped"):
            problems.add(
                f"{gw}.unmapped",
                "not supported: list each code without a target as an element "
                "with equivalence 'unmatched'",
            )
        items = group.get("element") or []
        if not isinstance(items, list):
            problems.add(f"{gw}.element", "must be a list")
            continue
        for ei, item in enumerate(items):
            _read_fhir_element(item, f"{gw}.element[{ei}]", problems, elements, wheres)
    if systems is None:
        systems = (top_source, top_target)
    source_system, target_system = systems
    if source_system is None:
        problems.add("sourceUri", "no source system (group.source, sourceUri or sourceCanonical)")
    if target_system is None:
        problems.add("targetUri", "no target system (group.target, targetUri or targetCanonical)")
    url_field = None if name is not None and url == default_url(name) else url
    field_where = {"name": "id", "source_system": "sourceUri", "target_system": "targetUri"}
    return _checked_doc(
        source,
        problems,
        field_where,
        elements,
        wheres,
        name=name,
        version=version,
        source_system=source_system,
        target_system=target_system,
        title=title,
        status=status or "active",
        publisher=publisher,
        date=date,
        url=url_field,
    )


def _read_fhir_element(
    item: object, ew: str, problems: _Problems, out: list[MapElement], wheres: list[str]
) -> None:
    if not isinstance(item, dict):
        problems.add(ew, "must be an object")
        return
    before = len(problems)
    code = problems.string(item, "code", f"{ew}.code")
    display = problems.string(item, "display", f"{ew}.display")
    if code is None and len(problems) == before:
        problems.add(f"{ew}.code", "missing")
    if len(problems) > before:
        return
    assert code is not None
    targets = item.get("target")
    if targets is None or targets == []:
        # an element without targets says the code has none
        targets = [{"equivalence": "unmatched"}]
    if not isinstance(targets, list):
        problems.add(f"{ew}.target", "must be a list")
        return
    for ti, target in enumerate(targets):
        tw = f"{ew}.target[{ti}]"
        if not isinstance(target, dict):
            problems.add(tw, "must be an object")
            continue
        before = len(problems)
        raw = target.get("equivalence")
        if raw is None:
            hint = (
                " (R5 'relationship' is not read: export the map as R4)"
                if ("relationship" in target)
                else ""
            )
            problems.add(f"{tw}.equivalence", f"missing{hint}")
            continue
        equivalence = _R4_ALIASES.get(raw, raw) if isinstance(raw, str) else raw
        if equivalence == "disjoint":
            problems.add(f"{tw}.equivalence", "'disjoint' (a negative statement) is not supported")
            continue
        for key in ("dependsOn", "product"):
            if target.get(key):
                problems.add(f"{tw}.{key}", "not supported: a conditional map changes its meaning")
        target_code = problems.string(target, "code", f"{tw}.code")
        target_display = problems.string(target, "display", f"{tw}.display")
        comment = problems.string(target, "comment", f"{tw}.comment")
        provenance = _read_provenance(target, tw, problems)
        if provenance.get("commentGenerated"):
            comment = None
        for message in _element_problems(
            code,
            target_code,
            equivalence,
            provenance.get("confidence"),
            provenance.get("reviewedAt"),
        ):
            problems.add(tw, message)
        if len(problems) > before:
            continue
        out.append(
            MapElement(
                source_code=code,
                source_display=display,
                target_code=target_code,
                target_display=target_display,
                equivalence=str(equivalence),
                comment=comment,
                method=provenance.get("method"),
                confidence=provenance.get("confidence"),
                reviewer=provenance.get("reviewer"),
                reviewed_at=provenance.get("reviewedAt"),
            )
        )
        wheres.append(tw)


# --------------------------------------------------------------------------- SSSOM


def _escape_local(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if ch in _CURIE_UNSAFE or ord(ch) < 32 or ord(ch) == 127:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def _tsv_field(value: str) -> str:
    # SSSOM/TSV quoting (RFC 4180 style): line breaks, quotes and tabs need double quotes.
    # (csv.writer leaves a lone \r unquoted, which its own reader then splits on.)
    if any(ch in value for ch in '\t\n\r"'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _derived_prefix(system: str) -> tuple[str, str]:
    if system in _KNOWN_PREFIXES:
        return _KNOWN_PREFIXES[system]
    local = "urn:medshadow:local:"
    if system.startswith(local):
        base = "LOCAL_" + system[len(local) :]
    else:
        rest = re.sub(r"^[A-Za-z][A-Za-z0-9+.\-]*:(//)?", "", system).rstrip("/#:")
        base = re.split(r"[/:#]", rest)[-1] if rest else ""
    name = re.sub(r"[^A-Za-z0-9]+", "_", base).strip("_").upper() or "CS"
    if not name[0].isalpha():
        name = "CS_" + name
    if system[-1] in "/#:":
        expansion = system
    else:
        expansion = system + (":" if system.lower().startswith("urn:") else "/")
    return name, expansion


def _justification(method: str | None, reviewer: str | None) -> str:
    if reviewer is not None:
        return _MANUAL
    if method is None:
        return _UNSPECIFIED
    if method.startswith("semapv:"):
        return method
    lowered = method.lower()
    lexical = any(w in lowered for w in ("lexical", "fulltext", "full-text", "string"))
    semantic = any(w in lowered for w in ("embedding", "semantic", "llm", "vector"))
    if lexical and semantic:
        return _COMPOSITE
    if semantic:
        return _SEMANTIC
    if lexical:
        return _LEXICAL
    if lowered == "manual":
        return _MANUAL
    return _UNSPECIFIED


def _date_part(value: str | None) -> str:
    return value[:10] if value is not None and _ISO_DATE.match(value) else ""


def _yaml_block(meta: dict[str, Any]) -> str:
    text = yaml.safe_dump(
        meta, allow_unicode=True, sort_keys=False, default_flow_style=False, width=1 << 20
    )
    return "".join(f"#{line}\n" for line in text.splitlines())


def to_sssom(doc: ConceptMapDoc) -> str:
    """The doc as SSSOM TSV: the ``#`` YAML metadata block, then one row per element."""
    source_prefix, source_ns = _derived_prefix(doc.source_system)
    if doc.target_system == doc.source_system:
        target_prefix, target_ns = source_prefix, source_ns
    else:
        target_prefix, target_ns = _derived_prefix(doc.target_system)
        if target_prefix == source_prefix:
            target_prefix += "_2"
    curie_map = {
        source_prefix: source_ns,
        source_prefix + _SYSTEM_SUFFIX: doc.source_system,
        target_prefix: target_ns,
        target_prefix + _SYSTEM_SUFFIX: doc.target_system,
        _EXT_PREFIX: _EXT_NAMESPACE,
    }
    if any(el.reviewer is not None for el in doc.elements):
        curie_map[_USER_PREFIX] = _USER_NAMESPACE
    timestamp_column = any(
        el.reviewed_at is not None and el.reviewed_at != _date_part(el.reviewed_at)
        for el in doc.elements
    )
    set_extensions = {"conceptmap_name": doc.name, "conceptmap_status": doc.status}
    if doc.date is not None:
        set_extensions["published_at"] = doc.date
    definitions = [
        {"slot_name": slot, "property": f"{_EXT_PREFIX}:{slot}", "type_hint": _SET_EXTENSIONS[slot]}
        for slot in set_extensions
    ]
    if timestamp_column:
        definitions += [
            {"slot_name": slot, "property": f"{_EXT_PREFIX}:{slot}", "type_hint": hint}
            for slot, hint in _ROW_EXTENSIONS.items()
        ]
    meta: dict[str, Any] = {
        "curie_map": dict(sorted(curie_map.items())),
        "mapping_set_id": doc.canonical_url,
        "mapping_set_version": doc.version,
    }
    if doc.title is not None:
        meta["mapping_set_title"] = doc.title
    if doc.publisher is not None:
        meta["creator_label"] = [doc.publisher]
    meta["license"] = SSSOM_UNSPECIFIED_LICENSE
    meta["subject_source"] = source_prefix + _SYSTEM_SUFFIX + ":"
    meta["object_source"] = target_prefix + _SYSTEM_SUFFIX + ":"
    if _date_part(doc.date):
        meta["publication_date"] = _date_part(doc.date)
    meta["extension_definitions"] = definitions
    meta.update(set_extensions)

    columns = list(SSSOM_COLUMNS) + (list(_ROW_EXTENSIONS) if timestamp_column else [])
    lines = ["\t".join(columns)]
    for el in doc.elements:
        unmatched = el.equivalence == "unmatched"
        row = {
            "subject_id": f"{source_prefix}:{_escape_local(el.source_code)}",
            "subject_label": el.source_display or "",
            "predicate_id": EQUIVALENCE_PREDICATES[el.equivalence],
            "object_id": NO_TERM_FOUND
            if unmatched
            else f"{target_prefix}:{_escape_local(el.target_code or '')}",
            "object_label": el.target_display or "",
            "mapping_justification": _justification(el.method, el.reviewer),
            "confidence": "" if el.confidence is None else repr(float(el.confidence)),
            "author_id": "",
            "reviewer_id": ""
            if el.reviewer is None
            else f"{_USER_PREFIX}:{_escape_local(el.reviewer)}",
            "mapping_date": _date_part(el.reviewed_at),
            "comment": el.comment or "",
            "mapping_tool": el.method or "",
            "reviewed_at": el.reviewed_at or "",
        }
        lines.append("\t".join(_tsv_field(row[c]) for c in columns))
    return _yaml_block(meta) + "".join(line + "\n" for line in lines)


def _split_metadata(text: str) -> tuple[list[str], str]:
    """The ``#`` lines (without ``#``) and the rest, splitting on ``\\n`` only."""
    lines: list[str] = []
    pos = 0
    while pos < len(text) and text.startswith("#", pos):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end + 1
        lines.append(text[pos + 1 : end].rstrip("\r\n"))
        pos = end
    return lines, text[pos:]


class _TextLoader(yaml.SafeLoader):
    """The safe loader with no implicit types: every scalar stays text, so an unquoted version
    ``1.10`` is not the float 1.1 and an unquoted date is the date as written."""


_TextLoader.yaml_implicit_resolvers = {}


def _load_yaml_text(text: str) -> Any:
    loader = _TextLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class _Curies:
    def __init__(self, curie_map: dict[str, str]) -> None:
        self.map = {**_BUILTIN_PREFIXES, **curie_map}

    def split(self, curie: str) -> tuple[str, str] | None:
        prefix, sep, local = curie.partition(":")
        return (prefix, local) if sep else None

    def expand(self, curie: str) -> str | None:
        parts = self.split(curie)
        if parts is None or parts[0] not in self.map:
            return None
        return self.map[parts[0]] + parts[1]


def _system_from(
    value: str | None, curies: _Curies, prefix: str | None, key: str, problems: _Problems
) -> str | None:
    if value is not None:
        expanded = curies.expand(value)
        if expanded is not None:
            return expanded
        if "://" in value or value.lower().startswith("urn:"):
            return value
        problems.add(key, f"{value!r} is not a CURIE with a prefix in the curie_map")
        return None
    if prefix is None:
        return None
    for system, (name, _) in _KNOWN_PREFIXES.items():
        if name == prefix:
            return system
    expansion = curies.map.get(prefix)
    return expansion.rstrip(":/#") if expansion else None


def from_sssom(text: str, *, source: str = "<input>") -> ConceptMapDoc:
    """Read an SSSOM TSV mapping set (embedded ``#`` metadata) as a ConceptMap.

    Raises:
        ConceptMapError: bad metadata, a missing column, an unknown predicate, a CURIE with an
            undeclared prefix, a matched row without object, …; every problem is listed with
            its line number, and nothing is returned.
    """
    meta_lines, body = _split_metadata(text)
    if not meta_lines:
        raise ConceptMapError.one(
            source, "line 1", "no '#' metadata block (curie_map, mapping_set_id, ...)"
        )
    try:
        meta = _load_yaml_text("\n".join(meta_lines))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "metadata block"
        raise ConceptMapError.one(source, where, f"metadata block is not YAML: {e}") from e
    if not isinstance(meta, dict):
        raise ConceptMapError.one(source, "line 1", "the metadata block is not a YAML mapping")
    problems = _Problems()
    raw_map = meta.get("curie_map") or {}
    curie_map: dict[str, str] = {}
    if not isinstance(raw_map, dict):
        problems.add("curie_map", "must be a mapping of prefix to IRI")
    else:
        for prefix, iri in raw_map.items():
            if not isinstance(prefix, str) or not isinstance(iri, str):
                problems.add("curie_map", f"entry {prefix!r}: {iri!r} is not prefix: IRI")
            else:
                curie_map[prefix] = iri
    curies = _Curies(curie_map)
    declared: set[str] = set()
    for definition in meta.get("extension_definitions") or []:
        if isinstance(definition, dict) and isinstance(definition.get("slot_name"), str):
            declared.add(definition["slot_name"])

    def meta_str(key: str, *, extension: bool = False) -> str | None:
        if extension and key not in declared:
            return None  # SSSOM: an undeclared non-standard slot is discarded
        value = meta.get(key)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if value is None or isinstance(value, str):
            return value or None
        problems.add(key, f"must be a single value, found {value!r}")
        return None

    set_id = meta_str("mapping_set_id")
    if set_id is None:
        problems.add("mapping_set_id", "missing (SSSOM requires it)")
    derived = meta_str("conceptmap_name", extension=True) or _name_from_url(set_id)
    name = _as_machine_name(derived) if derived else None
    version = meta_str("mapping_set_version") or "1"
    status = meta_str("conceptmap_status", extension=True) or "active"
    title = meta_str("mapping_set_title")
    creators = meta.get("creator_label")
    if isinstance(creators, list):
        publisher = "; ".join(str(c) for c in creators) or None
    else:
        publisher = meta_str("creator_label")
    date = meta_str("published_at", extension=True) or meta_str("publication_date")
    set_tool = meta_str("mapping_tool")
    first_line = len(meta_lines) + 1

    reader = csv.reader(io.StringIO(body, newline=""), delimiter="\t")
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as e:
        raise ConceptMapError.one(source, f"line {first_line}", f"bad TSV: {e}") from e
    if not header:
        raise ConceptMapError.one(
            source, f"line {first_line}", "no mappings header line after the metadata block"
        )
    missing = [c for c in _REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.add(f"line {first_line}", f"missing column(s): {', '.join(missing)}")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        problems.add(f"line {first_line}", f"repeated column(s): {', '.join(repeated)}")
    if missing or repeated:
        raise ConceptMapError(source, problems.items)

    elements: list[MapElement] = []
    wheres: list[str] = []
    prefixes: dict[str, str] = {}  # "subject"/"object" → the prefix of the first row
    previous_end = reader.line_num
    try:
        for row in reader:
            line = first_line + previous_end
            previous_end = reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # a blank line is not a mapping
            where = f"line {line}"
            if len(row) != len(header):
                problems.add(where, f"{len(row)} fields, the header has {len(header)}")
                continue
            cells = dict(zip(header, row, strict=True))
            element = _read_sssom_row(cells, where, curies, declared, set_tool, prefixes, problems)
            if element is not None:
                elements.append(element)
                wheres.append(where)
    except csv.Error as e:
        problems.add(f"line {first_line + reader.line_num}", f"bad TSV: {e}")

    source_system = _system_from(
        meta_str("subject_source"), curies, prefixes.get("subject"), "subject_source", problems
    )
    target_system = _system_from(
        meta_str("object_source"), curies, prefixes.get("object"), "object_source", problems
    )
    if source_system is None and "subject_source" not in {p.where for p in problems.items}:
        problems.add("subject_source", "missing, and no subject_id to tell the system by")
    if target_system is None and "object_source" not in {p.where for p in problems.items}:
        problems.add("object_source", "missing, and no object_id to tell the system by")
    url = None if name is not None and set_id == default_url(name) else set_id
    field_where = {"name": "conceptmap_name", "version": "mapping_set_version"}
    field_where |= {"source_system": "subject_source", "target_system": "object_source"}
    field_where |= {"status": "conceptmap_status", "date": "published_at", "url": "mapping_set_id"}
    return _checked_doc(
        source,
        problems,
        field_where,
        elements,
        wheres,
        name=name,
        version=version,
        source_system=source_system,
        target_system=target_system,
        title=title,
        status=status,
        publisher=publisher,
        date=date,
        url=url,
    )


def _checked_doc(
    source: str,
    problems: _Problems,
    field_where: dict[str, str],
    elements: list[MapElement],
    wheres: list[str],
    *,
    name: str | None,
    version: str,
    source_system: str | None,
    target_system: str | None,
    title: str | None,
    status: str,
    publisher: str | None,
    date: str | None,
    url: str | None,
) -> ConceptMapDoc:
    """The document a reader assembled, after the map-level checks; every problem found so far
    and here (named where the format keeps the field) raises together."""
    for field_name, message in _doc_problems(
        name=name or "x",
        version=version,
        source_system=source_system or "x:x",
        target_system=target_system or "x:x",
        status=status,
        date=date,
        url=url,
    ):
        problems.add(field_where.get(field_name, field_name), message)
    for i, message in _duplicate_problems(elements):
        problems.add(wheres[i], message)
    if problems:
        raise ConceptMapError(source, problems.items)
    # guaranteed: any gap was a problem, raised above
    assert name is not None
    assert source_system is not None
    assert target_system is not None
    return ConceptMapDoc(
        name=name,
        version=version,
        source_system=source_system,
        target_system=target_system,
        elements=tuple(elements),
        title=title,
        status=status,
        publisher=publisher,
        date=date,
        url=url,
    )


def _read_sssom_row(
    cells: dict[str, str],
    where: str,
    curies: _Curies,
    declared: set[str],
    set_tool: str | None,
    prefixes: dict[str, str],
    problems: _Problems,
) -> MapElement | None:
    before = len(problems)

    def cell(name: str) -> str | None:
        return cells.get(name) or None

    def code_of(column: str, role: str) -> str | None:
        value = (cells.get(column) or "").strip()
        parts = curies.split(value)
        if not value and role == "object":
            return None  # reported below as a matched row without target code
        if not value or parts is None:
            problems.add(where, f"{column} {value!r} is not a CURIE")
            return None
        prefix, local = parts
        if prefix not in curies.map:
            problems.add(where, f"{column} {value!r}: prefix {prefix!r} is not in the curie_map")
            return None
        expected = prefixes.setdefault(role, prefix)
        if prefix != expected:
            problems.add(
                where,
                f"{column} {value!r}: prefix {prefix!r} differs from {expected!r} of the first "
                "row (a ConceptMap has one source and one target system)",
            )
            return None
        return unquote(local)

    if (cells.get("subject_id") or "").strip() == NO_TERM_FOUND:
        problems.add(where, "subject_id sssom:NoTermFound: a ConceptMap row needs a source code")
        return None
    source_code = code_of("subject_id", "subject")
    predicate = (cells.get("predicate_id") or "").strip()
    unmatched = (cells.get("object_id") or "").strip() == NO_TERM_FOUND
    equivalence: str | None = "unmatched" if unmatched else _PREDICATE_EQUIVALENCES.get(predicate)
    if not predicate:
        problems.add(where, "predicate_id is empty")
    elif equivalence is None:
        known = ", ".join(_PREDICATE_EQUIVALENCES)
        problems.add(where, f"unknown predicate_id {predicate!r} (expected one of {known})")
    if cell("predicate_modifier") is not None:
        problems.add(where, f"predicate_modifier {cells['predicate_modifier']!r} is not supported")
    reported = len(problems)
    target_code = None if unmatched else code_of("object_id", "object")
    # a bad object_id is reported already: check the rest with a stand-in code
    checked_target = "?" if len(problems) > reported else target_code
    justification = (cells.get("mapping_justification") or "").strip()
    if not justification:
        problems.add(where, "mapping_justification is empty (SSSOM requires one)")
    confidence: object = None
    if cell("confidence") is not None:
        try:
            confidence = float(cells["confidence"])
        except ValueError:
            confidence = cells["confidence"]
    reviewer = _person(cell("reviewer_id"), curies) or cell("reviewer_label")
    if reviewer is None and justification == _MANUAL:
        reviewer = _person(cell("author_id"), curies)
    reviewed_at = (
        (cell("reviewed_at") if "reviewed_at" in declared else None)
        or cell("review_date")
        or cell("mapping_date")
    )
    method = cell("mapping_tool") or set_tool
    if method is None and justification and justification != _justification(None, reviewer):
        method = justification
    if source_code is not None and equivalence is not None:
        for message in _element_problems(
            source_code, checked_target, equivalence, confidence, reviewed_at
        ):
            problems.add(where, message)
    elif source_code is not None and confidence is not None:
        for message in _element_problems(source_code, None, "unmatched", confidence, None):
            problems.add(where, message)
    if len(problems) > before:
        return None
    assert source_code is not None
    assert equivalence is not None
    return MapElement(
        source_code=source_code,
        source_display=cell("subject_label"),
        target_code=target_code,
        target_display=cell("object_label"),
        equivalence=equivalence,
        comment=cell("comment"),
        method=method,
        confidence=confidence,  # type: ignore[arg-type]  # checked by _element_problems
        reviewer=reviewer,
        reviewed_at=reviewed_at,
    )


def _person(value: str | None, curies: _Curies) -> str | None:
    """A reviewer from an SSSOM entity reference: our user CURIE → the user name, else as is."""
    if value is None:
        return None
    parts = curies.split(value)
    if parts is not None and curies.map.get(parts[0]) == _USER_NAMESPACE:
        return unquote(parts[1])
    return value


# --------------------------------------------------------------------------- files


def _format_of(path: Path) -> str:
    lowered = path.name.lower()
    if lowered.endswith(".json"):
        return "fhir"
    if lowered.endswith(".tsv"):
        return "sssom"
    raise ConceptMapError.one(
        str(path), None, "unknown format: name the file *.json (FHIR) or *.sssom.tsv (SSSOM)"
    )


def read_concept_map(path: Path) -> ConceptMapDoc:
    """Read ``*.json`` as a FHIR ConceptMap, ``*.tsv`` / ``*.sssom.tsv`` as SSSOM.

    Raises:
        ConceptMapError: the file cannot be read or is not a valid map; names the file.
    """
    path = Path(path)
    kind = _format_of(path)
    try:
        # bytes, not read_text: newline translation would alter \r inside quoted TSV values
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConceptMapError.one(str(path), None, f"cannot read: {e}") from e
    if kind == "fhir":
        return from_fhir(text, source=str(path))
    return from_sssom(text, source=str(path))


def write_concept_map(doc: ConceptMapDoc, path: Path) -> None:
    """Write ``doc`` to ``path`` (format by extension, as :func:`read_concept_map`), atomically:
    a temporary file in the same folder is renamed over ``path``, so readers never see half."""
    path = Path(path)
    kind = _format_of(path)
    render: Callable[[ConceptMapDoc], str] = (
        (lambda d: json.dumps(to_fhir(d), ensure_ascii=False, indent=2) + "\n")
        if kind == "fhir"
        else to_sssom
    )
    data = render(doc).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
