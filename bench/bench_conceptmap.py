"""ConceptMap documents: write and read rows/s for FHIR JSON and SSSOM TSV against baselines.

A synthetic map of ``--rows`` elements (Russian displays, comments with tabs and newlines,
provenance on every row, one in ten unmatched) is written and read through the public API. The
baselines, in the same run, serialise the very same data without our checks: ``json`` dumps
and loads of the resource ``to_fhir`` made, ``csv`` writes and reads of the same table. The
ratio says what validation, CURIE handling and the YAML block cost on top.

    .venv/bin/python bench/bench_conceptmap.py
    .venv/bin/python bench/bench_conceptmap.py --rows 100000 --reps 3
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from collections.abc import Callable

from bench.common import log, num, print_table
from terminology.conceptmap import (
    ConceptMapDoc,
    MapElement,
    from_fhir,
    from_sssom,
    to_fhir,
    to_sssom,
)
from terminology.model import LOINC


def _doc(rows: int) -> ConceptMapDoc:
    elements = []
    for i in range(rows):
        unmatched = i % 10 == 9
        elements.append(
            MapElement(
                source_code=f"ЛАБ-{i}",
                source_display=f"Анализ крови № {i}",
                target_code=None if unmatched else f"{i}-{i % 9}",
                target_display=None if unmatched else f"Blood test {i}",
                equivalence="unmatched" if unmatched else ("equivalent", "narrower")[i % 2],
                comment=f'checked\tby "team"\nrow {i}' if i % 3 == 0 else None,
                method="lexical+embedding:e5+rerank",
                confidence=(i % 100) / 100,
                reviewer="anna" if i % 2 == 0 else None,
                reviewed_at="2026-11-23T19:00:00Z" if i % 2 == 0 else None,
            )
        )
    return ConceptMapDoc(
        "bench-lab", "1", "urn:medshadow:local:org-1:lab", LOINC, tuple(elements), title="Bench"
    )


def _best(reps: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _measure(rows: int, reps: int) -> list[list[str]]:
    log(f"building a map of {rows:,} rows")
    doc = _doc(rows)
    resource = to_fhir(doc)
    json_text = json.dumps(resource, ensure_ascii=False)
    tsv_text = to_sssom(doc)
    table_rows = [line.split("\t") for line in tsv_text.splitlines() if not line.startswith("#")]

    def csv_write() -> str:
        buf = io.StringIO()
        csv.writer(buf, delimiter="\t", lineterminator="\n").writerows(table_rows)
        return buf.getvalue()

    csv_text = csv_write()
    figures: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "fhir write": (
            lambda: json.dumps(to_fhir(doc), ensure_ascii=False),
            lambda: json.dumps(resource, ensure_ascii=False),
        ),
        "fhir read": (lambda: from_fhir(json_text), lambda: json.loads(json_text)),
        "sssom write": (lambda: to_sssom(doc), csv_write),
        "sssom read": (
            lambda: from_sssom(tsv_text),
            lambda: list(csv.reader(io.StringIO(csv_text, newline=""), delimiter="\t")),
        ),
    }
    out = []
    for name, (ours, baseline) in figures.items():
        log(f"{name}, {rows:,} rows")
        t_ours = _best(reps, ours)
        t_base = _best(reps, baseline)
        out.append(
            [name, num(rows), num(rows / t_ours), num(rows / t_base), num(t_ours / t_base, 1)]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000])
    parser.add_argument("--reps", type=int, default=3, help="best of N runs per figure")
    args = parser.parse_args()
    table = [row for rows in args.rows for row in _measure(rows, args.reps)]
    headers = ["operation", "rows", "rows/s", "baseline rows/s", "ratio (time ÷ baseline)"]
    print_table(headers, table)


if __name__ == "__main__":
    main()
