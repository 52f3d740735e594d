"""Drug names to ingredients through the packaged dictionary (no graph)."""

from __future__ import annotations

import pytest

from drugs.names import default_dictionary, french_to_english
from drugs.reconcile import strength


@pytest.mark.parametrize(
    ("product", "expected"),
    [
        # RxNorm product names as Synthea writes them: salts fall away, combinations split
        (
            "Acetaminophen 325 MG / oxyCODONE Hydrochloride 5 MG Oral Tablet",
            ["acetaminophen", "oxycodone"],
        ),
        ("24 HR metoprolol succinate 25 MG Extended Release Oral Tablet", ["metoprolol"]),
        ("Naproxen sodium 220 MG Oral Tablet", ["naproxen"]),
        ("Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet", ["amoxicillin", "clavulanic acid"]),
        # the generic part wins over the bracketed brand
        ("Acetaminophen 325 MG Oral Tablet [Tylenol]", ["acetaminophen"]),
        # brand names alone resolve to their ingredients
        ("Coumadin", ["warfarin"]),
        # a patient's own wording
        ("ibuprofen 400 mg", ["ibuprofen"]),
    ],
)
def test_product_names_to_ingredients(product: str, expected: list[str]) -> None:
    found = [i.name for i in default_dictionary().ingredients(product)]
    assert found == expected


def test_unknown_words_match_nothing() -> None:
    assert default_dictionary().ingredients("grandma's sleepy tea 2 cups") == []


@pytest.mark.parametrize(
    ("french", "english"),
    [
        ("warfarine", "warfarin"),
        ("acide acétylsalicylique", "aspirin"),
        ("acide valproïque", "valproic acid"),
        ("dalteparine sodique", "dalteparin"),
        ("sodium (oxybate de)", "sodium oxybate"),
        ("abciximab (c 7e3b fab)", "abciximab"),
        ("millepertuis", "st. john's wort"),
        ("paracetamol", "acetaminophen"),
    ],
)
def test_french_thesaurus_names(french: str, english: str) -> None:
    assert english in default_dictionary().from_french(french)


def test_french_candidates_keep_the_literal_name_first() -> None:
    assert french_to_english("amiodarone")[0] == "amiodarone"


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (("Simvastatin 20 MG Oral Tablet",), "20 mg"),
        (("10 mg", "Loratadine 5 MG"), "10 mg"),  # the stated dose comes first
        (("Acetaminophen 21.7 MG/ML Oral Solution",), "21.7 mg/ml"),
        (("Fish oil",), None),
    ],
)
def test_strength(texts: tuple[str, ...], expected: str | None) -> None:
    assert strength(*texts) == expected
