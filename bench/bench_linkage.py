"""Master-patient-index linkage quality and speed on the perturbed sample ecosystem.

For each population: copy the per-clinic split, perturb every domain's demographics the way
registries differ (``loaders.perturb``, ground truth kept), read each clinic record's Patient
as a :class:`~identity.model.DemographicRecord`, train the splink model, link everything and
score the automatic links against the ground truth (precision, recall, F1, review queue).
Then the incremental path: the last 10 % of records arrive as new ones and are matched against
the rest with the same model (no retraining): new records per second.

    .venv/bin/python bench/bench_linkage.py --patients 100 1000

Not yet part of loading: the graph still links records by national id (issue 3 wires this in).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from bench.common import log, num, population, print_table
from identity.evaluate import evaluate
from identity.linkage import Linker, classify, match_new, predict
from identity.model import DemographicRecord
from loaders.perturb import PERTURBATION_TRUTH_NAME, perturb_domains
from loaders.synthea import NATIONAL_ID_SYSTEM

PERTURB_SEED = 11


def _patient_record(path: Path, org_key: str) -> DemographicRecord:
    bundle = orjson.loads(path.read_bytes())
    patient: dict[str, Any] = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    names = patient.get("name") or [{}]
    official = next((n for n in names if n.get("use") != "maiden"), names[0])
    maiden = tuple(n["family"] for n in names if n.get("use") == "maiden" and n.get("family"))
    address = (patient.get("address") or [{}])[0]
    phone = next(
        (t["value"] for t in patient.get("telecom") or [] if t.get("system") == "phone"), None
    )
    ssn = next(
        (
            i["value"]
            for i in patient.get("identifier") or []
            if i.get("system") == NATIONAL_ID_SYSTEM
        ),
        None,
    )
    birth = patient.get("birthDate")
    return DemographicRecord(
        record_id=f"{org_key}/{patient['id']}",
        domain=org_key,
        family=official.get("family"),
        given=(official.get("given") or [None])[0],
        birth_date=date.fromisoformat(birth[:10]) if birth else None,
        gender=patient.get("gender"),
        national_id=ssn,
        postal_code=address.get("postalCode"),
        city=address.get("city"),
        address_line=(address.get("line") or [None])[0],
        phone=phone,
        other_family=maiden,
    )


def run(patients: int) -> list[object]:
    pop = population(patients)
    with tempfile.TemporaryDirectory(prefix="medshadow-linkage-") as tmp:
        split = Path(tmp) / "domains"
        shutil.copytree(pop.domains, split)
        started = time.perf_counter()
        report = perturb_domains(split, seed=PERTURB_SEED)
        log(
            f"{patients} patients: perturbed {report.records_changed} of "
            f"{report.records_seen} records (+{report.twin_records} twin records) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        truth_doc = orjson.loads((split / PERTURBATION_TRUTH_NAME).read_bytes())
        truth = {key: str(value["person"]) for key, value in truth_doc.items()}
        records = [
            _patient_record(path, path.parent.name)
            for path in sorted(split.glob("*/*.json"))
            if not path.name.startswith("ground_truth")
        ]
    persons = len(set(truth.values()))

    started = time.perf_counter()
    model = Linker.train(records)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    pairs = predict(model, records)
    predict_s = time.perf_counter() - started
    metrics = evaluate(classify(pairs), truth)

    cut = int(len(records) * 0.9)
    existing, new = records[:cut], records[cut:]
    started = time.perf_counter()
    match_new(model, existing, new)
    incremental_s = time.perf_counter() - started

    return [
        f"{patients} patients",
        num(len(records)),
        num(persons),
        f"{metrics.precision:.3f}",
        f"{metrics.recall:.3f}",
        f"{metrics.f1:.3f}",
        num(metrics.review_size),
        f"{train_s:.1f}",
        num(len(records) / predict_s),
        num(len(new) / incremental_s),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[100])
    args = parser.parse_args()
    rows = [run(n) for n in args.patients]
    print_table(
        [
            "population",
            "records",
            "persons",
            "precision",
            "recall",
            "F1",
            "review queue",
            "train s",
            "batch records/s",
            "incremental new records/s",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
