"""Drug-interaction mining (nlp/ddi.py) on the DDI Extraction 2013 corpus, against a baseline.

| task | measured | baseline (same run) |
|---|---|---|
| relation (9.2, gold entities) | ``classify_pair`` on each gold pair | all pairs "unspecified" |
| mention (9.1) | ``find_mentions`` spans vs gold, exact, type-insensitive | — |
| throughput | ``mine_text`` sentences/s | — |

The rules were written and tuned on the DrugBank part only; MedLine is held out. The corpus is
CC BY-NC 4.0 and is read from ``MEDSHADOW_DDI_CORPUS`` (default
``<repo>/../shared/data/text/ddi-corpus-2013-train``), never copied into the repository.

    .venv/bin/python bench/bench_ddi.py
    .venv/bin/python bench/bench_ddi.py --limit 50 --json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.settings import REPO_ROOT
from bench.common import log, num, print_table
from nlp.ddi import DDI_TYPES, CorpusSentence, classify_pair, find_mentions, mine_text, read_ddi_xml

_CORPUS_PATH = ("shared", "data", "text", "ddi-corpus-2013-train")
DEFAULT_CORPUS = REPO_ROOT.parent.joinpath(*_CORPUS_PATH)
PARTS = ("DrugBank", "MedLine")

Classifier = Callable[[CorpusSentence, str, str], str | None]


def corpus_dir() -> Path:
    """``MEDSHADOW_DDI_CORPUS``, else ``shared/data/text/ddi-corpus-2013-train`` beside the
    checkout or beside any folder above it (a CI clone may sit deeper than ``../``)."""
    configured = os.environ.get("MEDSHADOW_DDI_CORPUS")
    if configured:
        return Path(configured)
    for folder in REPO_ROOT.resolve().parents:
        candidate = folder.joinpath(*_CORPUS_PATH)
        if candidate.is_dir():
            return candidate
    return DEFAULT_CORPUS


def load_part(corpus: Path, part: str, limit: int | None = None) -> list[CorpusSentence]:
    files = sorted((corpus / part).glob("*.xml"))[:limit]
    if not files:
        raise FileNotFoundError(f"no DDI corpus XML under {corpus / part}")
    return [s for f in files for s in read_ddi_xml(f)]


@dataclass
class Counts:
    """True positives, false positives and false negatives; P/R/F1 derived."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


@dataclass
class RelationScores:
    """Task 9.2 scoring: per type, micro over types (type must match) and detection (yes/no)."""

    per_type: dict[str, Counts] = field(default_factory=lambda: {t: Counts() for t in DDI_TYPES})
    micro: Counts = field(default_factory=Counts)
    detection: Counts = field(default_factory=Counts)

    def add(self, gold: str | None, predicted: str | None) -> None:
        if predicted is not None and gold is not None:
            self.detection.tp += 1
        elif predicted is not None:
            self.detection.fp += 1
        elif gold is not None:
            self.detection.fn += 1
        if predicted is not None and predicted == gold:
            self.micro.tp += 1
            self.per_type[predicted].tp += 1
            return
        if predicted is not None:
            self.micro.fp += 1
            self.per_type[predicted].fp += 1
        if gold is not None:
            self.micro.fn += 1
            self.per_type[gold].fn += 1


def ours(sentence: CorpusSentence, e1: str, e2: str) -> str | None:
    decision = classify_pair(
        sentence.text, sentence.entity(e1).mention, sentence.entity(e2).mention
    )
    return None if decision is None else decision[0]


def cooccurrence(sentence: CorpusSentence, e1: str, e2: str) -> str | None:
    """The baseline: any two drugs in one sentence interact, kind unknown."""
    return "unspecified"


def score_relations(sentences: Iterable[CorpusSentence], classifier: Classifier) -> RelationScores:
    scores = RelationScores()
    for s in sentences:
        for pair in s.pairs:
            scores.add(pair.type, classifier(s, pair.e1, pair.e2))
    return scores


def score_mentions(sentences: Iterable[CorpusSentence]) -> Counts:
    """Exact span match, type-insensitive; a discontinuous gold entity can only be missed."""
    counts = Counts()
    for s in sentences:
        gold = {e.spans[0] for e in s.entities if len(e.spans) == 1}
        gold_discontinuous = sum(1 for e in s.entities if len(e.spans) > 1)
        found = {(m.start, m.end) for m in find_mentions(s.text)}
        counts.tp += len(gold & found)
        counts.fp += len(found - gold)
        counts.fn += len(gold - found) + gold_discontinuous
    return counts


def throughput(sentences: Sequence[CorpusSentence]) -> float:
    started = time.perf_counter()
    for s in sentences:
        mine_text(s.text, s.id)
    return len(sentences) / max(time.perf_counter() - started, 1e-9)


def prf(c: Counts) -> list[object]:
    return [c.tp, c.fp, c.fn, num(c.precision, 3), num(c.recall, 3), num(c.f1, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=corpus_dir())
    parser.add_argument("--limit", type=int, default=None, help="documents per part")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    args = parser.parse_args()

    started = time.perf_counter()
    parts = {p: load_part(args.corpus, p, args.limit) for p in PARTS}
    parts["all"] = parts["DrugBank"] + parts["MedLine"]
    log(f"read {len(parts['all']):,} sentences in {time.perf_counter() - started:.1f} s")
    find_mentions("warm-up loads the drug dictionary once")

    summary: dict[str, object] = {}
    print("\n## relation task (9.2, gold entities; DrugBank = development, MedLine = held out)\n")
    rows: list[list[object]] = []
    for name, sentences in parts.items():
        mine = score_relations(sentences, ours)
        base = score_relations(sentences, cooccurrence)
        for t in DDI_TYPES:
            rows.append([f"{name}: {t}", *prf(mine.per_type[t])])
        rows.append([f"{name}: micro (typed)", *prf(mine.micro)])
        rows.append([f"{name}: detection", *prf(mine.detection)])
        rows.append([f"{name}: baseline detection", *prf(base.detection)])
        ratio = mine.detection.f1 / base.detection.f1 if base.detection.f1 else float("inf")
        rows.append([f"{name}: detection F1 / baseline", "", "", "", "", "", f"{ratio:.2f}x"])
        summary[name] = {
            "pairs": sum(len(s.pairs) for s in sentences),
            "per_type": {t: mine.per_type[t].as_dict() for t in DDI_TYPES},
            "micro": mine.micro.as_dict(),
            "detection": mine.detection.as_dict(),
            "baseline_detection": base.detection.as_dict(),
            "baseline_micro": base.micro.as_dict(),
            "detection_f1_ratio": round(ratio, 3),
        }
    print_table(["set", "tp", "fp", "fn", "P", "R", "F1"], rows)

    print("\n## mention task (9.1, exact span, type-insensitive)\n")
    rows = []
    mentions: dict[str, object] = {}
    for name, sentences in parts.items():
        counts = score_mentions(sentences)
        rows.append([name, *prf(counts)])
        mentions[name] = counts.as_dict()
    summary["mentions"] = mentions
    print_table(["set", "tp", "fp", "fn", "P", "R", "F1"], rows)

    print("\n## throughput (mine_text, one call per sentence)\n")
    rate = throughput(parts["all"])
    print_table(["sentences", "sentences/s"], [[num(len(parts["all"])), num(rate)]])
    summary["sentences_per_s"] = round(rate, 1)
    if args.json:
        print("\n" + json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
