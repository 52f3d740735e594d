"""Drug-interaction mining: mentions, pair typing, provenance, the corpus reader and its scores.

The sentences here are written for these tests. The DDI 2013 corpus (CC BY-NC 4.0) is only read
from ``MEDSHADOW_DDI_CORPUS`` (default ``<repo>/../shared/data/text/ddi-corpus-2013-train``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from bench.bench_ddi import cooccurrence, corpus_dir, load_part, ours, score_relations
from nlp.ddi import (
    DDI_TYPES,
    CorpusSentence,
    DrugMention,
    classify_pair,
    find_mentions,
    mine_text,
    read_ddi_xml,
)

CORPUS = corpus_dir()
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"DDI 2013 corpus not found at {CORPUS} (MEDSHADOW_DDI_CORPUS)"
)


def mention(sentence: str, text: str) -> DrugMention:
    found = [m for m in find_mentions(sentence) if m.text.lower() == text.lower()]
    assert found, f"{text!r} not found in {[m.text for m in find_mentions(sentence)]}"
    return found[0]


# --------------------------------------------------------------------------- find_mentions


def test_drug_mention_has_canonical_name_and_drugbank_id() -> None:
    sentence = "The patient was started on amiodarone last spring."
    m = mention(sentence, "amiodarone")
    assert (m.kind, m.canonical) == ("drug", "amiodarone")
    assert m.drugbank_id is not None
    assert m.drugbank_id.startswith("DB")
    assert sentence[m.start : m.end] == "amiodarone"


def test_brand_name_resolves_to_its_generic() -> None:
    m = mention("She keeps a bottle of Tylenol at home.", "Tylenol")
    assert m.kind == "brand"
    assert m.canonical == "acetaminophen"


def test_drug_classes_are_group_mentions() -> None:
    sentence = "Beta-blockers, MAO inhibitors and oral anticoagulants need review."
    kinds = {m.text: m.kind for m in find_mentions(sentence)}
    assert kinds == {
        "Beta-blockers": "group",
        "MAO inhibitors": "group",
        "oral anticoagulants": "group",
    }


def test_offsets_slice_back_to_the_mention_text() -> None:
    sentence = "Combining simvastatin, clarithromycin and CYP3A4 inhibitors worried the pharmacist."
    mentions = find_mentions(sentence)
    assert [m.text for m in mentions] == ["simvastatin", "clarithromycin", "CYP3A4 inhibitors"]
    assert all(sentence[m.start : m.end] == m.text for m in mentions)


def test_ordinary_words_are_not_drugs() -> None:
    assert find_mentions("The dose was given with water after food in the morning.") == []


# --------------------------------------------------------------------------- classify_pair


@pytest.mark.parametrize(
    ("sentence", "a", "b", "expected"),
    [
        (
            "Fluconazole raises the plasma concentrations of glipizide.",
            "Fluconazole",
            "glipizide",
            "mechanism",
        ),
        (
            "Ibuprofen may blunt the natriuretic response to furosemide.",
            "Ibuprofen",
            "furosemide",
            "effect",
        ),
        (
            "Clopidogrel should not be combined with omeprazole.",
            "Clopidogrel",
            "omeprazole",
            "advice",
        ),
        (
            "Lithium is known to interact with hydrochlorothiazide.",
            "Lithium",
            "hydrochlorothiazide",
            "unspecified",
        ),
    ],
)
def test_each_interaction_type(sentence: str, a: str, b: str, expected: str) -> None:
    decision = classify_pair(sentence, mention(sentence, a), mention(sentence, b))
    assert decision is not None
    ddi_type, cue, confidence = decision
    assert ddi_type == expected
    assert cue
    assert cue in sentence
    assert 0 < confidence <= 1


@pytest.mark.parametrize(
    "sentence",
    [
        "No interaction was observed between pravastatin and digoxin.",
        "Pravastatin did not alter the clearance of digoxin.",
        "The combination of pravastatin with digoxin has not been studied.",
    ],
)
def test_negated_or_unstudied_interactions_are_not_statements(sentence: str) -> None:
    pravastatin, digoxin = mention(sentence, "pravastatin"), mention(sentence, "digoxin")
    assert classify_pair(sentence, pravastatin, digoxin) is None


def test_members_of_a_list_do_not_interact_with_each_other() -> None:
    sentence = "Rifampin lowers the plasma levels of atorvastatin, simvastatin and lovastatin."
    rifampin, atorva, simva, lova = find_mentions(sentence)
    assert classify_pair(sentence, atorva, simva) is None
    assert classify_pair(sentence, simva, lova) is None
    decision = classify_pair(sentence, rifampin, lova)
    assert decision is not None
    assert decision[0] == "mechanism"


def test_a_drug_does_not_interact_with_itself() -> None:
    sentence = "Digoxin levels rise, so monitor digoxin closely."
    first, second = find_mentions(sentence)
    assert classify_pair(sentence, first, second) is None


# --------------------------------------------------------------------------- mine_text


def test_mine_text_keeps_sentence_and_source_per_statement() -> None:
    text = (
        "The patient takes metformin every day. "
        "Cimetidine increases the AUC of metformin. "
        "Warfarin should be avoided with aspirin."
    )
    statements = mine_text(text, "note-17")
    by_source = {s.source: s for s in statements}
    assert set(by_source) == {"note-17#s1", "note-17#s2"}
    pk, advice = by_source["note-17#s1"], by_source["note-17#s2"]
    assert (pk.drug_a.text, pk.drug_b.text, pk.type) == ("Cimetidine", "metformin", "mechanism")
    assert pk.sentence == "Cimetidine increases the AUC of metformin."
    assert advice.type == "advice"
    assert advice.cue in advice.sentence
    assert all(s.type in DDI_TYPES for s in statements)


def test_mine_text_does_not_split_after_abbreviations() -> None:
    text = "Some antifungals, e.g. Ketoconazole, raise the plasma levels of tacrolimus."
    statements = mine_text(text, "doc")
    assert {s.source for s in statements} == {"doc#s0"}


# --------------------------------------------------------------------------- the corpus


@needs_corpus
def test_read_ddi_xml_offsets_and_pair_count() -> None:
    path = CORPUS / "DrugBank" / "Abciximab_ddi.xml"
    sentences = read_ddi_xml(path)
    xml_pairs = len(list(ET.parse(path).getroot().iter("pair")))
    assert sum(len(s.pairs) for s in sentences) == xml_pairs > 0
    discontinuous = 0
    for s in sentences:
        for e in s.entities:
            pieces = [s.text[a:b] for a, b in e.spans]
            assert " ".join(pieces) == e.mention.text, e.id
            discontinuous += len(e.spans) > 1
        ids = {e.id for e in s.entities}
        assert all(p.e1 in ids and p.e2 in ids for p in s.pairs)
        assert all(p.type is None or p.type in DDI_TYPES for p in s.pairs)
    assert discontinuous >= 1


@pytest.fixture(scope="module")
def medline() -> list[CorpusSentence]:
    return load_part(CORPUS, "MedLine")


@pytest.fixture(scope="module")
def drugbank() -> list[CorpusSentence]:
    return load_part(CORPUS, "DrugBank")


@needs_corpus
def test_detection_beats_cooccurrence_on_held_out_medline(medline: list[CorpusSentence]) -> None:
    mine = score_relations(medline, ours).detection
    baseline = score_relations(medline, cooccurrence).detection
    # measured F1 0.40 vs 0.23 (1.73x) when the rules were written; they were tuned on DrugBank
    # only, so this is the held-out figure
    assert mine.f1 > baseline.f1 * 1.4


@needs_corpus
def test_typed_f1_on_the_whole_corpus(
    drugbank: list[CorpusSentence], medline: list[CorpusSentence]
) -> None:
    micro = score_relations(drugbank + medline, ours).micro
    # measured 0.525 (P 0.45, R 0.63) when the rules were written
    assert micro.f1 > 0.45
