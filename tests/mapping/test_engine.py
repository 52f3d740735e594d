"""The mapping engine against the real graph: a clinic of the sample recoded to local codes
(ground truth from the generator), the packaged embedding models, and the YAML regression file
of local text → expected code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import neo4j
import pytest
import yaml
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from graph.mapping import CodeProfile, source_codes
from nlp.llm_rerank import LlmReranker
from nlp.mapping import Candidate, MappingEngine, cognate_similarity, expand, token_similarity
from nlp.semantic import SemanticSearch
from terminology.model import ICD10, LOINC, SNOMED
from tests.conftest import MappingWorld

REGRESSION = Path(__file__).with_name("regression.yaml")
TARGETS = {"snomed": SNOMED, "loinc": LOINC, "icd10": ICD10}


@pytest.fixture(scope="module")
def engine(driver: neo4j.Driver, mapping_world: MappingWorld) -> MappingEngine:
    return MappingEngine(driver, semantic=SemanticSearch(driver))


def _entries() -> list[dict[str, Any]]:
    entries = yaml.safe_load(REGRESSION.read_text(encoding="utf-8"))
    assert isinstance(entries, list)
    assert len(entries) >= 20
    return entries


def _profile(i: int, entry: dict[str, Any]) -> CodeProfile:
    unit = entry.get("unit")
    return CodeProfile(
        uid=f"urn:test:regression|{i}",
        system="urn:test:regression",
        code=str(i),
        display=entry["text"],
        designations=(),
        properties={"unit": unit} if unit else {},
        facts=0,
        kinds=(entry["kind"],),
        units=(unit,) if unit else (),
        values=None,
    )


@pytest.mark.parametrize("entry", _entries(), ids=lambda e: str(e["text"]))
def test_regression_file(engine: MappingEngine, entry: dict[str, Any]) -> None:
    target = TARGETS[entry["target"]]
    [ranked] = engine.suggest([_profile(0, entry)], target, k=10)
    codes = [c.code for c in ranked]
    assert entry["expect"] in codes[: entry["top"]], (
        f"{entry['text']!r}: expected {entry['expect']} in the top {entry['top']}, got "
        + "; ".join(f"{c.code} {c.display} {c.score:.2f}" for c in ranked[:5])
    )


def _rank_of(truth: str, ranked: list[Candidate]) -> int | None:
    uids = [c.uid for c in ranked]
    return uids.index(truth) + 1 if truth in uids else None


def _quality(
    engine: MappingEngine, driver: neo4j.Driver, world: MappingWorld, method: str
) -> tuple[float, float, int]:
    ranks: list[int | None] = []
    for system, target in ((world.dx_system, SNOMED), (world.lab_system, LOINC)):
        sources = source_codes(driver, system)
        assert sources, f"no local codes of {system}"
        ranked = engine.suggest(sources, target, method=method)  # type: ignore[arg-type]
        ranks += [_rank_of(world.truth[s.uid], r) for s, r in zip(sources, ranked, strict=True)]
    n = len(ranks)
    top1 = sum(1 for r in ranks if r == 1) / n
    top5 = sum(1 for r in ranks if r is not None and r <= 5) / n
    return top1, top5, n


def test_localized_clinic_maps_back_to_its_standard_codes(
    engine: MappingEngine, driver: neo4j.Driver, mapping_world: MappingWorld
) -> None:
    top1, top5, n = _quality(engine, driver, mapping_world, "combined")
    lexical_top1, _, _ = _quality(engine, driver, mapping_world, "lexical")
    assert n >= 20
    assert top5 >= 0.9, (top1, top5)
    assert top1 >= 0.8, (top1, top5)
    # the combined engine beats the Usagi-style lexical baseline on the same codes
    assert top1 > lexical_top1


def test_candidates_carry_their_evidence(
    engine: MappingEngine, driver: neo4j.Driver, mapping_world: MappingWorld
) -> None:
    sources = source_codes(driver, mapping_world.lab_system)
    seen: list[tuple[int, int]] = []
    ranked = engine.suggest(
        sources, LOINC, k=5, progress=lambda done, total: seen.append((done, total))
    )
    assert seen[0] == (0, len(sources))
    assert seen[-1] == (len(sources), len(sources))
    for source, candidates in zip(sources, ranked, strict=True):
        assert candidates, source.display
        best = candidates[0]
        assert best.uid.startswith(f"{LOINC}|")
        assert best.method
        assert "lexical" in best.features
        assert 0.0 < best.score <= 1.0
        assert best.rationale
        assert "words" in best.rationale
        assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
    # the lab values the clinic recorded are part of the evidence
    assert any("values" in c.features for r in ranked for c in r[:1])


def test_lexical_method_runs_without_embeddings(
    driver: neo4j.Driver, mapping_world: MappingWorld
) -> None:
    offline = MappingEngine(driver)
    [ranked] = offline.suggest(
        [_profile(0, {"text": "Glucose S/P", "unit": "mg/dL", "kind": "Observation"})],
        LOINC,
        method="lexical",
    )
    assert ranked
    assert "Glucose" in (ranked[0].display or "")
    with pytest.raises(ValueError, match="embedding index"):
        offline.suggest([], LOINC, method="combined")


def test_llm_rerank_picks_a_candidate_with_its_rationale(
    driver: neo4j.Driver, mapping_world: MappingWorld
) -> None:
    answer = '{"choice": 2, "confidence": 0.9, "rationale": "Same analyte in serum."}'
    llm = LlmReranker(FakeListChatModel(responses=[answer]), name="fake-llm")
    engine = MappingEngine(driver, semantic=SemanticSearch(driver), llm=llm)
    offline = MappingEngine(driver, semantic=SemanticSearch(driver))
    profile = _profile(0, {"text": "Glucose S/P", "unit": "mg/dL", "kind": "Observation"})
    [plain] = offline.suggest([profile], LOINC)
    [ranked] = engine.suggest([profile], LOINC)
    assert ranked[0].uid == plain[1].uid  # the model's second-listed candidate now leads
    assert ranked[0].method.endswith("+llm:fake-llm")
    assert ranked[0].rationale is not None
    assert "Same analyte in serum." in ranked[0].rationale
    assert ranked[0].features["llm"] == pytest.approx(0.9)
    assert engine.last_report is not None
    assert engine.last_report.llm_calls == 1


def test_text_helpers() -> None:
    assert expand("chr CKD w/ HTN") == "chronic chronic kidney disease with hypertension"
    assert token_similarity(expand("fx clavicle"), "Fracture of clavicle") == 1.0
    assert token_similarity("CKD stage 3", "Chronic kidney disease stage 2") < 1.0
    assert token_similarity("hypertension", "Hyperlipidemia") == 0.0
    assert cognate_similarity("Гемоглобин", "Hemoglobin [Mass/volume] in Blood") == 1.0
    assert cognate_similarity("Калий", "Potassium") == 0.0
