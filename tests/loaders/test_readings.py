"""Parsing an IoT cloud's export (bad lines named by file:line, good ones kept) and the
generator: deterministic per seed, with silences and abnormal episodes where it says."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

import orjson
import pytest

from loaders.errors import LoaderError
from loaders.iot_gen import IOT_TRUTH_NAME, generate_iot
from loaders.readings import (
    METRICS,
    Account,
    Reading,
    Rejected,
    accounts_batch,
    discover_iot,
    parse_accounts_file,
    parse_devices_file,
    parse_readings_file,
)
from loaders.synthea import GROUND_TRUTH_NAME
from ontology.model import Label, RelType

GOOD = {
    "account": "a1",
    "device": "d1",
    "metric": "heart_rate",
    "time": "2025-12-30T10:00:00+01:00",
    "value": 71,
    "unit": "/min",
}


def _line(**changes: object) -> bytes:
    return orjson.dumps({**GOOD, **changes})


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def test_bad_lines_are_rejected_with_file_line_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "readings.ndjson"
    lines = [
        _line(),  # 1 good
        b'{"account": "a1", "device"',  # 2 malformed
        _line(metric="cholesterol"),  # 3 unknown metric
        _line(unit="mmol/L"),  # 4 unit mismatch
        _line(value=900),  # 5 out of range
        _line(value="fast"),  # 6 not a number
        _line(time="2025-12-30T10:00:00"),  # 7 no offset
        _line(account=""),  # 8 missing account
        b"",  # 9 blank: skipped, not an error
        b"[1, 2]",  # 10 not an object
        _line(metric="spo2", unit="%", value=96.5, time="2025-12-30T09:05:00Z"),  # 11 good
        _line(unit="bpm"),  # 12 good: an accepted alias of /min
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    items = list(parse_readings_file(path, vendor="acme"))
    good = [(w, r) for w, r in items if isinstance(r, Reading)]
    bad = {w: r.reason for w, r in items if isinstance(r, Rejected)}
    assert [w for w, _ in good] == [f"{path}:1", f"{path}:11", f"{path}:12"]
    assert good[0][1].time == _epoch("2025-12-30T09:00:00Z")
    assert good[0][1].series_uid == "iot:acme/Series/d1/heart_rate"
    assert good[0][1].record_uid == "iot:acme/Patient/a1"
    assert good[1][1].value == 96.5
    expected = {
        2: "malformed JSON",
        3: "unknown metric 'cholesterol'",
        4: "unit 'mmol/L' does not match heart_rate",
        5: "value 900 outside 20..300",
        6: "value 'fast' is not a number",
        7: "has no UTC offset",
        8: "missing required field 'account'",
        10: "not a JSON object",
    }
    assert set(bad) == {f"{path}:{n}" for n in expected}
    for n, reason in expected.items():
        assert reason in bad[f"{path}:{n}"], (n, bad[f"{path}:{n}"])


def test_csv_readings_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    path.write_text(
        "account,device,metric,time,value,unit\n"
        "a1,d1,weight,2025-12-30T07:00:00Z,81.4,kg\n"
        "a1,d1,weight,2025-12-31T07:00:00Z,81.1\n"
        "a1,d1,weight,2025-12-31T07:00:00Z,81.1,[lb_av]\n"
        "\n"
        "a1,d2,urine_ph,2025-12-31T07:01:00Z,6.5,[pH]\n"
    )
    items = list(parse_readings_file(path, vendor="acme"))
    assert [(w, type(r).__name__) for w, r in items] == [
        (f"{path}:2", "Reading"),
        (f"{path}:3", "Rejected"),
        (f"{path}:4", "Rejected"),
        (f"{path}:6", "Reading"),
    ]
    assert "5 cells, header has 6" in items[1][1].reason  # type: ignore[union-attr]
    assert "does not match weight" in items[2][1].reason  # type: ignore[union-attr]
    headless = tmp_path / "readings-2.csv"
    headless.write_text("who,what\nx,y\n")
    ((where, rejected),) = list(parse_readings_file(headless, vendor="acme"))
    assert where == f"{headless}:1"
    assert isinstance(rejected, Rejected)
    assert "CSV header lacks account" in rejected.reason


def test_metrics_table_has_loinc_codes_and_ucum_units() -> None:
    assert set(METRICS) == {
        "heart_rate",
        "bp_systolic",
        "bp_diastolic",
        "spo2",
        "glucose",
        "weight",
        "steps",
        "body_temperature",
        "urine_ph",
    }
    codes = [m.code for m in METRICS.values()]
    assert len(set(codes)) == len(codes)
    assert METRICS["bp_systolic"].code == "8480-6"
    assert METRICS["bp_diastolic"].unit == "mm[Hg]"
    assert METRICS["body_temperature"].unit == "Cel"
    assert all(m.system == "http://loinc.org" and m.low < m.high for m in METRICS.values())


def test_accounts_become_patient_records_without_national_id(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.ndjson"
    accounts.write_text(
        '{"id":"a1","name":"Bob van Dyke","birthDate":"1961-04-02","gender":"M",'
        '"email":"bob@x.example","phone":"555-1","postalCode":"02139","city":"Cambridge",'
        '"addressLine":"1 Main St"}\n'
        '{"id":"a2","birthDate":"1961-04-02"}\n'
        '{"id":"a3","name":"Ann","birthDate":"02/04/1961"}\n'
    )
    devices = tmp_path / "devices.ndjson"
    devices.write_text('{"id":"d1","account":"a1","type":"scale","registered":"2025-01-01"}\n')
    items = list(parse_accounts_file(accounts, vendor="acme"))
    account = items[0]
    assert isinstance(account, Account)
    assert account.given == ("Bob", "van")
    assert account.family == "Dyke"
    assert account.gender == "male"
    assert account.birth_date == date(1961, 4, 2)
    assert [(r.location, r.reason) for r in items[1:] if isinstance(r, Rejected)] == [
        (f"{accounts}:2", "missing required field 'name'"),
        (f"{accounts}:3", "birthDate='02/04/1961' is not an ISO date"),
    ]
    (device,) = list(parse_devices_file(devices, vendor="acme"))
    assert isinstance(device, Rejected)
    assert "has no UTC offset" in device.reason
    batch, changes = accounts_batch("acme", [account], [])
    patient = batch.nodes[(Label.PATIENT, "iot:acme/Patient/a1")].props
    assert "nationalId" not in patient
    assert patient["postalCode"] == "02139"
    assert patient["addressLine"] == "1 Main St"
    assert batch.nodes[(Label.DOMAIN, "iot:acme")].props["kind"] == "IOT_CLOUD"
    assert (RelType.IN_DOMAIN, "iot:acme/Patient/a1", "iot:acme") in batch.rels
    assert not any(label is Label.PERSON for label, _ in batch.nodes)
    assert changes == {"iot:acme/Patient/a1": {"Patient"}}


def test_discover_sorts_files_by_kind(tmp_path: Path) -> None:
    for name in ("accounts.ndjson", "devices.ndjson", "readings.ndjson", "readings.csv"):
        (tmp_path / name).write_text("")
    (tmp_path / IOT_TRUTH_NAME).write_text("{}")
    found = discover_iot([tmp_path])
    assert [p.name for p in found.accounts] == ["accounts.ndjson"]
    assert [p.name for p in found.readings] == ["readings.csv", "readings.ndjson"]
    with pytest.raises(LoaderError, match="not an IoT export"):
        discover_iot([tmp_path / IOT_TRUTH_NAME])


# -- the generator -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(sample_domains: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("iot-gen")
    generate_iot(sample_domains, out, seed=3, days=6, fraction=0.5, vendor="acme", csv_variant=True)
    return out


def test_generator_is_deterministic_per_seed(
    generated: Path, sample_domains: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    other = tmp_path / "other"
    generate_iot(
        sample_domains, again, seed=3, days=6, fraction=0.5, vendor="acme", csv_variant=True
    )
    generate_iot(sample_domains, other, seed=4, days=6, fraction=0.5, vendor="acme")
    for name in ("accounts.ndjson", "devices.ndjson", "readings.ndjson", "readings.csv"):
        assert (generated / name).read_bytes() == (again / name).read_bytes(), name
    assert (generated / IOT_TRUTH_NAME).read_bytes() == (again / IOT_TRUTH_NAME).read_bytes()
    assert (generated / "readings.ndjson").read_bytes() != (other / "readings.ndjson").read_bytes()


def test_generated_files_parse_cleanly_and_csv_matches_ndjson(generated: Path) -> None:
    nd = list(parse_readings_file(generated / "readings.ndjson", vendor="acme"))
    cs = list(parse_readings_file(generated / "readings.csv", vendor="acme"))
    assert all(isinstance(r, Reading) for _, r in nd)
    assert [r for _, r in nd] == [r for _, r in cs]
    assert all(isinstance(a, Account) for a in parse_accounts_file(generated / "accounts.ndjson", vendor="acme"))  # fmt: skip
    assert len(nd) > 6 * 4 * 1440  # minute-level heart rate for every chosen person


def test_accounts_map_to_split_persons_with_realistic_differences(
    generated: Path, sample_domains: Path
) -> None:
    truth = orjson.loads((generated / IOT_TRUTH_NAME).read_bytes())
    persons = orjson.loads((sample_domains / GROUND_TRUTH_NAME).read_bytes())
    assert len(truth["accounts"]) == round(0.5 * len(persons))
    assert set(truth["accounts"].values()) <= set(persons)
    accounts = [
        orjson.loads(line) for line in (generated / "accounts.ndjson").read_bytes().splitlines()
    ]
    assert {a["id"] for a in accounts} == set(truth["accounts"])
    assert all("nationalId" not in a for a in accounts)


def test_generator_writes_silences_and_abnormal_episodes(generated: Path) -> None:
    truth = orjson.loads((generated / IOT_TRUTH_NAME).read_bytes())
    by_series: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for line in (generated / "readings.ndjson").read_bytes().splitlines():
        r = orjson.loads(line)
        by_series[(r["device"], r["metric"])][_epoch(r["time"])] = r["value"]
    gaps = [s for s in truth["silences"] if s["end"] is not None]
    assert len(gaps) >= len(truth["accounts"])  # every wearable goes off-wrist at least once
    for s in truth["silences"]:
        lo = _epoch(s["start"])
        hi = _epoch(s["end"]) if s["end"] else 2**40
        times = [t for (dev, _), vals in by_series.items() if dev == s["device"] for t in vals]
        assert not [t for t in times if lo <= t < hi], s
        assert any(t < lo for t in times) or s["end"] is None
    assert len(truth["episodes"]) >= len(truth["accounts"])
    for e in truth["episodes"]:
        lo, hi = _epoch(e["start"]), _epoch(e["end"])
        values = [v for t, v in by_series[(e["device"], e["metric"])].items() if lo <= t < hi]
        assert values, e
        match e["kind"]:
            case "tachycardia":
                assert statistics.median(values) > 120, e
            case "desaturation":
                assert max(values) <= 88, e
            case "hypertensive_spike":
                assert min(values) >= 180, e
            case "hypoglycaemia":
                assert max(values) <= 62, e
