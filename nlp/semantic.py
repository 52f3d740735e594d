"""Semantic concept search: embed Concept names into the graph, find concepts near a text.

:func:`embed_concepts` keeps a model's vectors on ``Concept`` nodes current: it reads every
concept of a code system with the hash of the text its vector was made from, embeds only the
new and changed ones in batches, and writes them in batched transactions (the graph part is
``graph/vectors.py``). :class:`SemanticSearch` embeds a query with the right model — the
multilingual one for non-English text — and asks the vector index for the nearest concepts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from graph.connection import Driver
from graph.vectors import (
    VectorRow,
    clear_vectors,
    concept_texts,
    nearest,
    vector_slot,
    write_vectors,
)
from nlp.embeddings import Embedder, get_embedder, model_for, model_spec, text_hash

#: Called with (concepts just finished, concepts to embed in all).
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class EmbedReport:
    """What one embedding run did to one model's vectors."""

    model: str
    system: str | None
    #: Concepts looked at (of the system, or all).
    concepts: int
    #: Vectors computed and written (new concepts and concepts whose text changed).
    embedded: int
    #: Concepts whose stored vector was made from their current text: left alone.
    unchanged: int
    #: Concepts without a display to embed (counted, never silently skipped).
    without_text: int
    #: Stale vectors removed because the concept's text went away.
    cleared: int
    #: Concepts deleted between reading and writing (not recreated).
    vanished: int


def embed_concepts(
    driver: Driver,
    model: str = "minilm",
    *,
    system: str | None = None,
    embedder: Embedder | None = None,
    batch_size: int = 256,
    progress: Progress | None = None,
    database: str | None = None,
) -> EmbedReport:
    """Embed the concepts (of ``system``, or all) that have no vector in ``model``'s slot or
    whose text changed since theirs was computed; one write transaction per ``batch_size``.

    Re-running with nothing changed reads the concepts and writes nothing.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model_spec(model)  # a clear error for an unknown key before any work
    slot = vector_slot(model)
    embedder = embedder or get_embedder(model)
    if embedder.dimensions != slot.dimensions:
        raise ValueError(
            f"{embedder.name} makes {embedder.dimensions}-d vectors, "
            f"slot {slot.property} holds {slot.dimensions}"
        )
    concepts = concept_texts(driver, slot, system=system, database=database)
    todo: list[tuple[str, str, str]] = []
    unchanged = 0
    without_text: list[str] = []
    to_clear: list[str] = []
    for concept in concepts:
        text = _embeddable(concept.text)
        if text is None:
            without_text.append(concept.uid)
            if concept.stored_hash is not None:
                to_clear.append(concept.uid)
            continue
        digest = text_hash(embedder.name, text)
        if digest == concept.stored_hash:
            unchanged += 1
        else:
            todo.append((concept.uid, text, digest))
    cleared = clear_vectors(driver, slot, to_clear, database=database)
    embedded = vanished = 0
    if progress:
        progress(0, len(todo))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        vectors = embedder.embed([text for _, text, _ in chunk])
        rows = [
            VectorRow(uid, vector, digest)
            for (uid, _, digest), vector in zip(chunk, vectors, strict=True)
        ]
        written = write_vectors(driver, slot, rows, database=database)
        embedded += written
        vanished += len(rows) - written
        if progress:
            progress(len(chunk), len(todo))
    return EmbedReport(
        model=model,
        system=system,
        concepts=len(concepts),
        embedded=embedded,
        unchanged=unchanged,
        without_text=len(without_text),
        cleared=cleared,
        vanished=vanished,
    )


@dataclass(frozen=True, slots=True)
class SemanticHit:
    """One candidate concept for a text: what a terminologist needs to judge it."""

    uid: str
    score: float
    #: ``embedding:<model key>``, e.g. ``embedding:e5``.
    method: str
    system: str | None
    code: str | None
    display: str | None


class SemanticSearch:
    """Ranked concepts for free text, by embedding similarity over the graph's vector indexes.

    ``embedders`` maps model keys to embedders (default: the packaged ones, loaded on first
    use). Without an explicit ``model`` each text goes to :func:`nlp.embeddings.model_for`'s
    choice: the English model for English, the multilingual one for anything else.
    """

    def __init__(
        self,
        driver: Driver,
        *,
        embedders: Mapping[str, Embedder] | None = None,
        database: str | None = None,
    ) -> None:
        self.driver = driver
        self.database = database
        self._embedders = dict(embedders or {})

    def embedder(self, model: str) -> Embedder:
        if model not in self._embedders:
            model_spec(model)
            self._embedders[model] = get_embedder(model)
        return self._embedders[model]

    def search(
        self,
        text: str,
        *,
        k: int = 10,
        system: str | None = None,
        model: str | None = None,
    ) -> list[SemanticHit]:
        """The ``k`` concepts nearest to ``text``, best first (optionally of one system)."""
        return self.search_many([text], k=k, system=system, model=model)[0]

    def search_many(
        self,
        texts: Sequence[str],
        *,
        k: int = 10,
        system: str | None = None,
        model: str | None = None,
    ) -> list[list[SemanticHit]]:
        """:meth:`search` for many texts, embedding them in one batch per model."""
        keys = [model or model_for(text) for text in texts]
        vectors: dict[int, list[float]] = {}
        for key in dict.fromkeys(keys):
            positions = [i for i, k_ in enumerate(keys) if k_ == key]
            embedded = self.embedder(key).embed([texts[i] for i in positions], query=True)
            vectors.update(zip(positions, embedded, strict=True))
        results: list[list[SemanticHit]] = []
        for i, key in enumerate(keys):
            hits = nearest(
                self.driver,
                vector_slot(key),
                vectors[i],
                k=k,
                system=system,
                database=self.database,
            )
            method = f"embedding:{key}"
            results.append(
                [SemanticHit(h.uid, h.score, method, h.system, h.code, h.display) for h in hits]
            )
        return results


def _embeddable(text: str | None) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text or None
