"""Shared by the readings tests: a generated IoT export loaded under a unique vendor, the
expected values computed straight from its NDJSON, and the clean-up."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import neo4j
import orjson

from app.readings import ReadingsLoadReport
from tests.conftest import purge_domains


def unique_vendor() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class LoadedIot:
    vendor: str
    out: Path
    report: ReadingsLoadReport

    @property
    def domain(self) -> str:
        return f"iot:{self.vendor}"


#: (account, device, metric) -> {epoch second: value}, from the readings NDJSON.
Expected = dict[tuple[str, str, str], dict[int, float]]


def expected_readings(path: Path) -> Expected:
    out: Expected = defaultdict(dict)
    with path.open("rb") as fh:
        for line in fh:
            r = orjson.loads(line)
            t = int(datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp())
            out[(r["account"], r["device"], r["metric"])][t] = float(r["value"])
    return dict(out)


def python_trend(
    values: dict[int, float], lo: int, hi: int, width: int, origin: int
) -> list[tuple[int, int, float, float, float, float]]:
    """(period start, count, min, max, mean, population stddev) per period, from raw values."""
    groups: dict[int, list[float]] = defaultdict(list)
    for t, v in values.items():
        if lo <= t < hi:
            groups[t - (t - origin) % width].append(v)
    out = []
    for start in sorted(groups):
        vs = groups[start]
        mean = math.fsum(vs) / len(vs)
        std = math.sqrt(max(math.fsum(v * v for v in vs) / len(vs) - mean * mean, 0.0))
        out.append((start, len(vs), min(vs), max(vs), mean, std))
    return out


def cleanup(driver: neo4j.Driver, vendor: str) -> None:
    domain = f"iot:{vendor}"
    driver.execute_query(
        "MATCH (r:Patient {sourceDomain: $d}) OPTIONAL MATCH (r)-[:RECORD_OF]->(p:Person) "
        "WHERE p.uid STARTS WITH 'test-iot-' DETACH DELETE p",
        d=domain,
    )
    purge_domains(driver, domain)


def link_to_test_person(driver: neo4j.Driver, record_uid: str) -> str:
    """The Person the master patient index linked an IoT record to (the load links)."""
    rows, _, _ = driver.execute_query(
        "MATCH (:Patient {uid: $r})-[:RECORD_OF]->(p:Person) RETURN p.uid AS p", r=record_uid
    )
    assert rows, f"{record_uid} was not linked to a person by the load"
    return str(rows[0]["p"])
