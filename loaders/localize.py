"""Make one clinic of the sample ecosystem speak its own codes (ground truth kept).

Real clinics code diagnoses and lab tests with local code lists: short codes, abbreviated or
non-English names. :func:`localize_clinic` rewrites, in place, every per-patient bundle of one
clinic of a split (``loaders.synthea.split_by_provider``): each Condition's SNOMED CT coding and
each laboratory Observation's LOINC coding is replaced by the clinic's local code
(``urn:medshadow:local:<org>:dx`` / ``:lab``, codes ``DX0001`` / ``LB0001``) with a local display
— Russian where :data:`RU_CONDITIONS` / :data:`RU_LABS` know the concept, otherwise a clinic-style
abbreviation of the standard name. The clinic's code lists are written as CSV (code, display,
description, unit, frequency: what a clinic would export for the mapping workbench) next to the
split, and ``ground_truth_local_codes.json`` maps each local code to the standard one, for tests
and benchmarks only. Deterministic per seed; running it again restores the originals first.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from loaders.errors import LoaderError
from loaders.synthea import write_atomic

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
LOCAL_TRUTH_NAME = "ground_truth_local_codes.json"

#: Russian names of common Synthea conditions (SNOMED CT code -> name a Russian clinic uses).
RU_CONDITIONS: dict[str, str] = {
    "44054006": "Сахарный диабет 2 типа",
    "59621000": "Эссенциальная гипертензия",
    "38341003": "Артериальная гипертензия",
    "714628002": "Предиабет",
    "15777000": "Предиабет",
    "162864005": "Ожирение (ИМТ 30+)",
    "444814009": "Вирусный синусит",
    "195662009": "Острый вирусный фарингит",
    "10509002": "Острый бронхит",
    "66383009": "Гингивит",
    "65363002": "Средний отит",
    "43878008": "Стрептококковый фарингит",
    "233604007": "Пневмония",
    "271737000": "Анемия",
    "40055000": "Хронический синусит",
    "36971009": "Синусит",
    "55822004": "Гиперлипидемия",
    "302870006": "Гипертриглицеридемия",
    "433144002": "Хроническая болезнь почек 3 стадии",
    "431855005": "Хроническая болезнь почек 1 стадии",
    "431856006": "Хроническая болезнь почек 2 стадии",
    "237602007": "Метаболический синдром",
    "195967001": "Бронхиальная астма",
    "233678006": "Бронхиальная астма детская",
    "37320007": "Мигрень",
    "124171000119105": "Хроническая мигрень без ауры",
    "125605004": "Перелом кости",
    "44465007": "Растяжение связок голеностопного сустава",
    "70704007": "Растяжение связок лучезапястного сустава",
    "307731004": "Острый цистит",
    "68496003": "Полип толстой кишки",
    "82423001": "Хроническая боль",
    "73595000": "Стресс",
    "192127007": "Синдром дефицита внимания у ребёнка",
    "49436004": "Фибрилляция предсердий",
    "53741008": "Ишемическая болезнь сердца",
    "22298006": "Инфаркт миокарда",
    "230690007": "Инсульт",
    "13645005": "Хроническая обструктивная болезнь лёгких",
    "35489007": "Депрессивное расстройство",
    "197927001": "Рецидивирующая инфекция мочевых путей",
}

#: Russian names of common laboratory tests (LOINC code -> name on a Russian lab report).
RU_LABS: dict[str, str] = {
    "4548-4": "Гликированный гемоглобин (HbA1c)",
    "2339-0": "Глюкоза крови",
    "2345-7": "Глюкоза сыворотки",
    "718-7": "Гемоглобин",
    "6690-2": "Лейкоциты",
    "789-8": "Эритроциты",
    "787-2": "Средний объём эритроцита (MCV)",
    "785-6": "Среднее содержание гемоглобина в эритроците (MCH)",
    "786-4": "Средняя концентрация гемоглобина в эритроците (MCHC)",
    "777-3": "Тромбоциты",
    "4544-3": "Гематокрит",
    "2093-3": "Холестерин общий",
    "2571-8": "Триглицериды",
    "18262-6": "Холестерин ЛПНП",
    "2085-9": "Холестерин ЛПВП",
    "6299-2": "Мочевина крови",
    "3094-0": "Азот мочевины сыворотки",
    "38483-4": "Креатинин крови",
    "2160-0": "Креатинин сыворотки",
    "49765-1": "Кальций крови",
    "17861-6": "Кальций сыворотки",
    "2947-0": "Натрий крови",
    "2951-2": "Натрий сыворотки",
    "6298-4": "Калий крови",
    "2823-3": "Калий сыворотки",
    "2069-3": "Хлориды крови",
    "2075-0": "Хлориды сыворотки",
    "20565-8": "Углекислый газ общий, кровь",
    "2028-9": "Углекислый газ общий, сыворотка",
    "2885-2": "Общий белок",
    "1751-7": "Альбумин",
    "1975-2": "Билирубин общий",
    "6768-6": "Щелочная фосфатаза",
    "1742-6": "Аланинаминотрансфераза (АЛТ)",
    "1920-8": "Аспартатаминотрансфераза (АСТ)",
    "33914-3": "СКФ (MDRD)",
    "5803-2": "pH мочи",
    "5811-5": "Удельный вес мочи",
}

#: Clinic shorthand for standard words (the fallback when no Russian name is known).
_ABBREVIATIONS = [
    (r"\bdiabetes mellitus\b", "DM"),
    (r"\bhypertension\b", "HTN"),
    (r"\bchronic kidney disease\b", "CKD"),
    (r"\bchronic\b", "chr"),
    (r"\bacute\b", "ac"),
    (r"\bwithout\b", "w/o"),
    (r"\bwith\b", "w/"),
    (r"\binfection\b", "inf"),
    (r"\bfracture of\b", "fx"),
    (r"\bfracture\b", "fx"),
    (r"\bdisorder\b", "dis"),
    (r"\bsyndrome\b", "synd"),
    (r"\binjury\b", "inj"),
    (r"\bhistory of\b", "h/o"),
    (r"\bmass/volume\b", "m/v"),
    (r"\bmoles/volume\b", "mol/v"),
    (r"\bserum or plasma\b", "S/P"),
    (r"\bblood\b", "bld"),
    (r"\burine\b", "ur"),
    (r"\bautomated count\b", "auto"),
    (r"\bby\b", ""),
    (r"\bin\b", ""),
]
_SEMANTIC_TAG = re.compile(
    r"\s*\((disorder|finding|situation|person|morphologic abnormality|"
    r"procedure|observable entity|event)\)\s*$"
)


class LocalizeError(LoaderError):
    """The clinic cannot be localised (not in the split, nothing to rewrite)."""


@dataclass(frozen=True, slots=True)
class LocalCode:
    system: str
    code: str
    display: str
    standard: str  # "system|code" of the standard concept it stands for
    unit: str | None
    frequency: int


@dataclass(frozen=True, slots=True)
class LocalizeReport:
    org_key: str
    bundles: int
    codings_replaced: int
    diagnoses: tuple[LocalCode, ...]
    labs: tuple[LocalCode, ...]
    code_lists: Path


def local_system(org_key: str, kind: str) -> str:
    return f"urn:medshadow:local:{org_key}:{kind}"


def abbreviate(display: str) -> str:
    """``"Chronic kidney disease stage 3 (disorder)"`` -> ``"CKD stage 3"``."""
    text = _SEMANTIC_TAG.sub("", display)
    text = re.sub(r"\[[^\]]*\]", lambda m: m.group(0).lower(), text)
    for pattern, short in _ABBREVIATIONS:
        text = re.sub(pattern, short, text, flags=re.IGNORECASE)
    text = re.sub(r"\s+", " ", text).strip(" ,")
    return text[:40]


def localize_clinic(
    split_dir: Path, org_key: str, *, seed: int = 2026, out_dir: Path | None = None
) -> LocalizeReport:
    """Rewrite the clinic ``org_key`` of ``split_dir`` to local codes; see the module docstring.

    ``out_dir`` (default: ``<split_dir>/../local-codes/<org_key>``) receives the code lists
    (``diagnoses.csv``, ``labs.csv``), the ground truth and the original bundles (a re-run
    starts from them).

    Raises:
        LocalizeError: no such clinic in the split, or it has no bundles.
    """
    clinic = Path(split_dir) / org_key
    if not clinic.is_dir():
        raise LocalizeError(f"{clinic}: no clinic {org_key!r} in the split")
    target = out_dir or Path(split_dir).parent / "local-codes" / org_key
    originals = target / "originals"  # outside the split: loaders read every file there
    bundles = sorted(p for p in clinic.glob("*.json"))
    if not bundles:
        raise LocalizeError(f"{clinic}: the clinic has no bundles")
    originals.mkdir(parents=True, exist_ok=True)
    docs: dict[Path, Any] = {}
    for path in bundles:
        kept = originals / path.name
        if not kept.exists():  # first run: keep the original; later runs start from it
            write_atomic(kept, path.read_bytes())
        docs[path] = orjson.loads(kept.read_bytes())

    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in docs.values():
        for resource in _resources(doc):
            coding = _standard_coding(resource)
            if coding is not None:
                key = (coding["system"], coding["code"])
                entry = seen.setdefault(key, {"display": coding.get("display"), "n": 0})
                entry["n"] += 1
                if entry.get("unit") is None:
                    entry["unit"] = (resource.get("valueQuantity") or {}).get("code")
    rng = random.Random(f"{seed}:{org_key}")  # noqa: S311 - sample data, not secrets
    codes: dict[tuple[str, str], LocalCode] = {}
    for kind, system, prefix in (("dx", SNOMED, "DX"), ("lab", LOINC, "LB")):
        keys = sorted(k for k in seen if k[0] == system)
        numbers = rng.sample(range(1, 10 * max(len(keys), 1) + 1), len(keys))
        for key, number in zip(keys, numbers, strict=True):
            entry = seen[key]
            glossary = RU_CONDITIONS if system == SNOMED else RU_LABS
            display = glossary.get(key[1]) or abbreviate(str(entry["display"] or key[1]))
            codes[key] = LocalCode(
                system=local_system(org_key, kind),
                code=f"{prefix}{number:04d}",
                display=display,
                standard=f"{key[0]}|{key[1]}",
                unit=entry.get("unit"),
                frequency=int(entry["n"]),
            )
    replaced = 0
    for path, doc in docs.items():
        for resource in _resources(doc):
            coding = _standard_coding(resource)
            if coding is not None:
                local = codes[(coding["system"], coding["code"])]
                resource["code"] = {
                    "coding": [
                        {"system": local.system, "code": local.code, "display": local.display}
                    ],
                    "text": local.display,
                }
                replaced += 1
        write_atomic(path, orjson.dumps(doc))

    dx = tuple(c for c in codes.values() if c.system.endswith(":dx"))
    labs = tuple(c for c in codes.values() if c.system.endswith(":lab"))
    write_atomic(target / "diagnoses.csv", _csv(dx, with_unit=False))
    write_atomic(target / "labs.csv", _csv(labs, with_unit=True))
    truth = {f"{c.system}|{c.code}": c.standard for c in codes.values()}
    write_atomic(target / LOCAL_TRUTH_NAME, orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return LocalizeReport(org_key, len(bundles), replaced, dx, labs, target)


def _resources(doc: Any) -> Iterable[dict[str, Any]]:
    for entry in doc.get("entry") or []:
        resource = entry.get("resource")
        if isinstance(resource, dict):
            yield resource


def _is_lab(resource: dict[str, Any]) -> bool:
    return any(
        coding.get("code") == "laboratory"
        for category in resource.get("category") or []
        for coding in category.get("coding") or []
    )


def _standard_coding(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The coding a clinic would code locally: a Condition's SNOMED, a lab's LOINC."""
    rtype = resource.get("resourceType")
    if rtype == "Condition":
        wanted = SNOMED
    elif rtype == "Observation" and _is_lab(resource) and "valueQuantity" in resource:
        wanted = LOINC
    else:
        return None
    for coding in (resource.get("code") or {}).get("coding") or []:
        if coding.get("system") == wanted and coding.get("code"):
            return dict(coding)
    return None


def _csv(codes: Iterable[LocalCode], *, with_unit: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["code", "display", "description", "unit", "frequency"])
    for c in sorted(codes, key=lambda c: c.code):
        writer.writerow([c.code, c.display, "", (c.unit or "") if with_unit else "", c.frequency])
    return out.getvalue().encode("utf-8")
