"""Master patient index: linkage quality and speed through the graph, against ground truth.

Records: the 1,000-patient Synthea population split per clinic (4,405 clinic records), copied
into independent "clinic networks", each perturbed the way registries differ
(``loaders.perturb``: typos, transliteration, marriage, swapped day/month, missing or mistyped
national ids, moves, twins) with its own seed, the truth of who is who kept. The first
``N`` records, whole persons at a time, make the 1,000 and 10,000 person-record sets.

For each set, in a fresh embedded Neo4j, with the packaged model (what the product ships):

* batch — every record written as a Patient node, then one ``MasterIndex.link_pending()``;
  precision / recall / F1 of the pairs the Persons imply, and the review queue;
* incremental — 90 % linked first, then the last 10 % arrive and are matched against the
  graph (blocking keys) without retraining: new records per second, and the same metrics
  over all records afterwards;
* baseline (same run) — the deterministic rule alone (same national id and birth date).

    .venv/bin/python bench/bench_linkage.py --records 1000 10000
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson

from bench.common import fresh_neo4j, log, num, population, print_table
from graph.connection import Driver
from graph.writer import write_batch
from identity.evaluate import true_pair_count
from loaders.fhir import patient_demographics
from loaders.perturb import PERTURBATION_TRUTH_NAME, perturb_domains
from mpi.service import MasterIndex
from ontology.model import DomainKind, Label, RelType
from ontology.records import GraphBatch

NETWORK_SEEDS = (21, 22, 23)
CLINIC_RECORDS = 4405  # clinic records of the 1,000-patient split


@dataclass(frozen=True, slots=True)
class Record:
    uid: str
    person: str
    props: dict[str, object]


def network_records(split: Path, seeds: Sequence[int]) -> list[Record]:
    """Every clinic record of every perturbed copy (cached next to the split: perturbing a
    4,400-record network takes minutes and is deterministic)."""
    cache = split.parent / f"linkage-networks-{'-'.join(map(str, seeds))}.json"
    if cache.is_file():
        rows = orjson.loads(cache.read_bytes())
        return [Record(r["uid"], r["person"], r["props"]) for r in rows]
    records = _perturbed_networks(split, seeds)
    cache.write_bytes(
        orjson.dumps([{"uid": r.uid, "person": r.person, "props": r.props} for r in records])
    )
    return records


def _perturbed_networks(split: Path, seeds: Sequence[int]) -> list[Record]:
    records: list[Record] = []
    for n, seed in enumerate(seeds, start=1):
        with tempfile.TemporaryDirectory(prefix="medshadow-linkage-") as tmp:
            copy = Path(tmp) / "domains"
            shutil.copytree(split, copy)
            started = time.perf_counter()
            perturb_domains(copy, seed=seed)
            log(f"network {n}: perturbed with seed {seed} in {time.perf_counter() - started:.1f}s")
            truth = orjson.loads((copy / PERTURBATION_TRUTH_NAME).read_bytes())
            for key, entry in sorted(truth.items()):
                org, local = key.split("/")
                bundle = orjson.loads((copy / f"{key}.json").read_bytes())
                patient = next(
                    e["resource"]
                    for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "Patient"
                )
                domain = f"mis:net{n}-{org}"
                props = {**patient_demographics(patient), "recordId": local, "sourceDomain": domain}
                records.append(Record(f"{domain}/Patient/{local}", str(entry["person"]), props))
    return records


def take(records: Sequence[Record], n: int) -> list[Record]:
    """At least ``n`` records from as few networks as hold them, whole persons at a time,
    persons in a stable order; then shuffled (seeded), so the incremental path's last 10 %
    are mostly further records of persons already in the graph."""
    networks = -(-n // CLINIC_RECORDS)
    wanted = tuple(f"mis:net{k}-" for k in range(1, networks + 1))
    by_person: dict[str, list[Record]] = {}
    for r in records:
        if r.uid.startswith(wanted):
            by_person.setdefault(r.person, []).append(r)
    out: list[Record] = []
    for person in sorted(by_person):
        if len(out) >= n:
            break
        out += by_person[person]
    random.Random(7).shuffle(out)
    return out


def write_records(driver: Driver, records: Iterable[Record]) -> None:
    batch = GraphBatch()
    for r in records:
        domain = str(r.props["sourceDomain"])
        batch.node(Label.DOMAIN, domain, {"name": domain, "kind": DomainKind.MIS.value})
        props = dict(r.props)
        if isinstance(props.get("birthDate"), str):  # as the FHIR loader stores it
            props["birthDate"] = date.fromisoformat(str(props["birthDate"])[:10])
        batch.node(Label.PATIENT, r.uid, props)
        batch.rel(RelType.IN_DOMAIN, (Label.PATIENT, r.uid), (Label.DOMAIN, domain))
    write_batch(driver, batch)


def persons(driver: Driver) -> dict[str, str]:
    rows, _, _ = driver.execute_query(
        "MATCH (r:Patient)-[:RECORD_OF]->(p:Person) RETURN r.uid AS r, p.uid AS p"
    )
    return {row["r"]: row["p"] for row in rows}


def review_size(driver: Driver) -> int:
    rows, _, _ = driver.execute_query(
        "MATCH (c:MatchCandidate {status: 'open'}) RETURN count(c) AS n"
    )
    return int(rows[0]["n"])


def scores(assigned: dict[str, str], truth: dict[str, str]) -> tuple[float, float, float]:
    """Pairwise precision / recall / F1 of the clusters (Persons) against the truth."""
    clusters: dict[str, list[str]] = {}
    for record, person in assigned.items():
        clusters.setdefault(person, []).append(record)
    linked = sum(len(c) * (len(c) - 1) // 2 for c in clusters.values())
    tp = 0
    for members in clusters.values():
        counts: dict[str, int] = {}
        for m in members:
            counts[truth[m]] = counts.get(truth[m], 0) + 1
        tp += sum(k * (k - 1) // 2 for k in counts.values())
    precision = tp / linked if linked else 1.0
    recall = tp / true_pair_count(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def rule_only(records: Sequence[Record]) -> dict[str, str]:
    """Baseline: link exactly the records that share national id and birth date."""
    out: dict[str, str] = {}
    for r in records:
        nid, birth = r.props.get("nationalId"), r.props.get("birthDate")
        out[r.uid] = f"{nid}|{birth}" if nid else r.uid
    return out


def clear(driver: Driver) -> None:
    with driver.session() as session:  # CALL ... IN TRANSACTIONS needs an implicit transaction
        session.run(
            "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
        ).consume()


def run(records: list[Record], driver: Driver) -> list[list[object]]:
    truth = {r.uid: r.person for r in records}
    humans = len(set(truth.values()))
    label = f"{num(len(records))} records ({num(humans)} persons)"
    rows: list[list[object]] = []

    p, r, f = scores(rule_only(records), truth)
    rows.append([label, "rule only (baseline)", f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", "-", "-"])

    clear(driver)
    write_records(driver, records)
    report = MasterIndex(driver).link_pending()
    p, r, f = scores(persons(driver), truth)
    rows.append(
        [
            label,
            "batch link_pending",
            f"{p:.3f}",
            f"{r:.3f}",
            f"{f:.3f}",
            num(review_size(driver)),
            num(report.records_per_second),
        ]
    )
    log(f"{label}: batch {report.seconds:.1f}s ({report.pairs_scored} pairs)")

    clear(driver)
    cut = int(len(records) * 0.9)
    write_records(driver, records[:cut])
    MasterIndex(driver).link_pending()
    write_records(driver, records[cut:])
    incremental = MasterIndex(driver).link_pending()
    p, r, f = scores(persons(driver), truth)
    rows.append(
        [
            label,
            f"incremental (last {num(len(records) - cut)})",
            f"{p:.3f}",
            f"{r:.3f}",
            f"{f:.3f}",
            num(review_size(driver)),
            num(incremental.records_per_second),
        ]
    )
    log(
        f"{label}: incremental {incremental.pending} new records in {incremental.seconds:.2f}s, "
        f"compared with {incremental.existing_compared} existing"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    pop = population(1000)
    networks = -(-max(args.records) // CLINIC_RECORDS)
    records = network_records(pop.domains, NETWORK_SEEDS[:networks])
    rows: list[list[object]] = []
    with fresh_neo4j() as neo:
        for n in args.records:
            rows += run(take(records, n), neo.driver)
    print_table(["set", "path", "precision", "recall", "F1", "review queue", "records/s"], rows)


if __name__ == "__main__":
    main()
