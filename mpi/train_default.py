"""Train the packaged linkage model (``mpi/default_model.json``) on a perturbed synthetic split.

The graph uses the packaged model until ``medshadow mpi train`` retrains on its own records;
a small ecosystem (a demo, a test) has too few duplicates to learn from. Reproduce it with::

    .venv/bin/python -m mpi.train_default .medshadow/bench/p1000-s2026/domains

(the split ``bench/common.population(1000)`` makes). The split is copied, perturbed with
``loaders.perturb`` (seed 11) and every clinic record's Patient becomes a training record.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import orjson

from identity.linkage import Linker
from identity.model import DemographicRecord
from loaders.fhir import patient_demographics
from loaders.perturb import perturb_domains
from mpi.service import DEFAULT_MODEL_PATH, record_from_props

PERTURB_SEED = 11


def split_records(split: Path) -> list[DemographicRecord]:
    """The Patient of every per-clinic bundle under ``split`` as a linkage record."""
    records = []
    for path in sorted(split.glob("*/*.json")):
        if path.name.startswith("ground_truth") or path.name == "manifest.json":
            continue
        bundle = orjson.loads(path.read_bytes())
        patient = next(
            e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
        )
        domain = f"mis:{path.parent.name}"
        props = {
            **patient_demographics(patient),
            "uid": f"{domain}/Patient/{patient['id']}",
            "domain": domain,
        }
        records.append(record_from_props(props))
    return records


def perturbed_records(split: Path, *, seed: int = PERTURB_SEED) -> list[DemographicRecord]:
    with tempfile.TemporaryDirectory(prefix="medshadow-train-") as tmp:
        copy = Path(tmp) / "domains"
        shutil.copytree(split, copy)
        perturb_domains(copy, seed=seed)
        return split_records(copy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split", type=Path, help="a per-clinic split (loaders.synthea)")
    parser.add_argument("--output", "-o", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    records = perturbed_records(args.split)
    model = Linker.train(records, seed=args.seed)
    args.output.write_text(model.to_json() + "\n")
    print(f"trained on {len(records)} records -> {args.output}")


if __name__ == "__main__":
    main()
