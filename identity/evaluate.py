"""Accuracy of linkage decisions against ground truth (which records are the same person).

Metrics are pairwise on unique unordered record pairs: a true positive is an automatic link
between two records of one person, and the true pairs are every pair of records that share
a person id in the ground truth (whether or not blocking found them, so recall includes
what blocking lost).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from identity.linkage import Decisions, ScoredPair, classify, cluster

__all__ = ["LinkageMetrics", "evaluate", "sweep_thresholds", "true_pair_count"]


@dataclass(frozen=True, slots=True)
class LinkageMetrics:
    """Pairwise quality of automatic links, and the size of the review queue."""

    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int
    auto_links: int
    review_size: int
    #: True pairs in the review queue: the matches a steward still has to confirm.
    review_true: int


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def true_pair_count(truth: Mapping[str, str]) -> int:
    """Number of unordered record pairs of the same person in ``truth``."""
    return sum(n * (n - 1) // 2 for n in Counter(truth.values()).values())


def evaluate(
    decisions: Decisions | Iterable[ScoredPair],
    truth: Mapping[str, str],
    *,
    transitive: bool = False,
) -> LinkageMetrics:
    """Precision, recall and F1 of the automatic links against ``truth``.

    Args:
        decisions: from :func:`~identity.linkage.classify`, or an iterable of pairs taken
            to be the automatic links (then the review queue is empty).
        truth: record id -> person id, for every record of the linked batch.
        transitive: score the pairs implied by the clusters of the automatic links (what
            the graph ends up holding) instead of the links themselves.

    Raises:
        KeyError: a linked record id missing from ``truth``.
    """
    if isinstance(decisions, Decisions):
        auto: Sequence[ScoredPair] = decisions.auto_links
        review: Sequence[ScoredPair] = decisions.review
    else:
        auto, review = list(decisions), ()
    linked = {_key(p.left, p.right) for p in auto if p.left != p.right}
    if transitive:
        linked = {
            _key(a, b) for members in cluster(auto) for a in members for b in members if a < b
        }
    tp = sum(1 for a, b in linked if truth[a] == truth[b])
    fp = len(linked) - tp
    fn = true_pair_count(truth) - tp
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    review_pairs = {_key(p.left, p.right) for p in review}
    return LinkageMetrics(
        precision=precision,
        recall=recall,
        f1=f1,
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        auto_links=len(linked),
        review_size=len(review_pairs),
        review_true=sum(1 for a, b in review_pairs if truth[a] == truth[b]),
    )


def sweep_thresholds(
    pairs: Sequence[ScoredPair],
    truth: Mapping[str, str],
    auto_thresholds: Iterable[float],
    *,
    review_threshold: float = 0.0,
) -> list[tuple[float, LinkageMetrics]]:
    """:func:`evaluate` at each automatic-link threshold, to choose one."""
    results: list[tuple[float, LinkageMetrics]] = []
    for threshold in auto_thresholds:
        decisions = classify(
            pairs,
            auto_threshold=threshold,
            review_threshold=min(review_threshold, threshold),
        )
        results.append((threshold, evaluate(decisions, truth)))
    return results
