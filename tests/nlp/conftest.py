"""The packaged embedding models, loaded once per test session."""

from __future__ import annotations

import pytest

from nlp.embeddings import E5Embedder, MiniLMEmbedder, get_embedder


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    embedder = get_embedder("minilm")
    assert isinstance(embedder, MiniLMEmbedder)
    return embedder


@pytest.fixture(scope="session")
def e5() -> E5Embedder:
    embedder = get_embedder("e5")
    assert isinstance(embedder, E5Embedder)
    return embedder
