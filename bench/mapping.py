"""Mapping engine: how well it maps a clinic's local codes onto SNOMED CT and LOINC.

Labelled set: the ``--patients`` bench population (default 1,000, seed 2026: not the demo's 40
patients on which the engine's weights were set), split per clinic; its ``--clinics`` busiest
clinics (default 5) are recoded to local codes by ``loaders.localize.localize_clinic`` on a copy
of the split (files hard-linked, cached under ``.medshadow/bench/p{N}-s{seed}/mapping-c{K}``;
the recoder replaces files atomically, so the cached population stays intact). Each recoded
clinic has a diagnosis and a lab code list and the generator's ground truth.

In a fresh Neo4j, each step timed: the whole recoded split loaded with ``load_fhir`` (every
clinic, so the other clinics' standard-coded data is there as in a real ecosystem; no linking),
the code systems ``synthea``, ``loinc``, ``icd10``, every clinic's code lists, and SNOMED CT and
LOINC embedded with both models. Then every local code of every list goes through
``MappingEngine.suggest`` (k = 10, the engine's batching; a fresh engine per list and method):

| method | what ranks the candidates |
|---|---|
| ``lexical`` (baseline) | full-text + token similarity only: what Usagi does |
| ``embedding`` | cosine of the packaged sentence models only |
| ``combined`` (measured) | all generators, re-ranked with hierarchy, units and the data |

per target (diagnoses → ``http://snomed.info/sct``, labs → ``http://loinc.org``) and per
language of the local display (``terminology.local.language_of``: Russian vs English or
abbreviated): n, top-1, top-5, MRR (reciprocal rank of the truth within the top 10, 0 when
absent) and codes/s (wall time of ``suggest`` over whole lists). Items are distinct local codes
per clinic; the ``uniq`` columns count each (kind, display, unit) once (the mean over the
clinics that share it), so a display five clinics share weighs as one. Targets for the combined
method: top-1 ≥ 0.90, top-5 ≥ 0.98.

    .venv/bin/python bench/mapping.py                       # 1,000 patients, 5 clinics
    .venv/bin/python bench/mapping.py --patients 100 --clinics 2 --misses --json /tmp/m.json
    .venv/bin/python bench/mapping.py --keep-db --misses   # tuning loop: load once, re-score

The 1,000-patient load is most of a run (8-11 min of ~15-18 on 2 shared cores); ``--keep-db``
keeps that database next to the labelled set, so later runs only re-check the (idempotent)
terminology and embedding steps and re-score: a few minutes per engine change.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from access.policy import Principal, Role
from access.terminology import TerminologyAccess
from app.pipeline import load_fhir
from bench.common import (
    DEFAULT_SEED,
    JARS,
    BenchNeo4j,
    Population,
    fresh_neo4j,
    log,
    num,
    population,
    print_table,
)
from graph.connection import Driver, open_driver
from graph.embedded import EmbeddedNeo4j, free_port
from graph.mapping import CodeProfile, source_codes, target_profiles
from graph.schema import ensure_schema
from loaders.localize import LOCAL_TRUTH_NAME, local_system, localize_clinic
from nlp.mapping import METHODS, Candidate, MappingEngine, Method
from nlp.semantic import SemanticSearch, embed_concepts
from terminology.local import language_of, parse_local_codes
from terminology.model import LOINC, SNOMED
from terminology.sources import parse

TARGETS = {"dx": SNOMED, "lab": LOINC}
TARGET_NAMES = {SNOMED: "SNOMED CT", LOINC: "LOINC"}
CODE_LISTS = {"dx": "diagnoses.csv", "lab": "labs.csv"}
TOP1_TARGET, TOP5_TARGET = 0.90, 0.98
K = 10
#: Short names of the engine's features in the misses list.
FEATURE_NAMES = {
    "lexical": "lex",
    "embedding": "emb",
    "cognate": "cog",
    "pivot": "piv",
    "kind": "kind",
    "unit": "unit",
    "values": "val",
    "usage": "use",
    "common": "com",
    "llm": "llm",
}


# --------------------------------------------------------------------------- labelled set


@dataclass(frozen=True, slots=True)
class Clinic:
    """One recoded clinic: its code lists and the truth (local uid -> standard uid)."""

    org: str
    code_lists: Path
    truth: dict[str, str]


@dataclass(frozen=True, slots=True)
class LabelledSet:
    root: Path
    domains: Path
    clinics: tuple[Clinic, ...]


def busiest_clinics(domains: Path, n: int) -> list[str]:
    """The ``n`` clinics with most patient bundles (as ``medshadow demo`` picks them)."""
    ranked = sorted(
        (d for d in domains.iterdir() if d.is_dir()),
        key=lambda d: (-sum(1 for _ in d.glob("*.json")), d.name),
    )
    return [d.name for d in ranked[:n]]


def _link_tree(source: Path, target: Path) -> int:
    """Copy ``source`` to ``target`` as hard links (a real copy across file systems)."""
    files = 0
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)
        files += 1
    return files


def labelled_set(pop: Population, clinics: int, seed: int) -> LabelledSet:
    """The population's split with its ``clinics`` busiest clinics recoded (cached: redone only
    when the split or the choice changed)."""
    root = pop.root / f"mapping-c{clinics}-s{seed}"
    domains, codes = root / "domains", root / "codes"
    split_marker = pop.domains / "split.done"
    stamp = split_marker.read_text() if split_marker.is_file() else str(len(pop.bundles))
    marker = root / "localized.json"
    chosen = busiest_clinics(pop.domains, clinics)
    wanted = {"split": stamp.strip(), "clinics": chosen, "seed": seed}
    if not marker.is_file() or orjson.loads(marker.read_bytes()) != wanted:
        started = time.perf_counter()
        shutil.rmtree(root, ignore_errors=True)
        files = _link_tree(pop.domains, domains)
        log(f"copied the split ({num(files)} files, hard links) to {domains}")
        for org in chosen:
            report = localize_clinic(domains, org, seed=seed, out_dir=codes / org)
            log(
                f"{org}: {len(report.diagnoses)} diagnosis and {len(report.labs)} lab codes, "
                f"{num(report.codings_replaced)} codings recoded"
            )
        marker.write_bytes(orjson.dumps(wanted))
        log(f"labelled set ready in {time.perf_counter() - started:.0f} s")
    else:
        log(f"reusing the labelled set in {root}")
    out = []
    for org in chosen:
        truth = orjson.loads((codes / org / LOCAL_TRUTH_NAME).read_bytes())
        out.append(Clinic(org, codes / org, truth))
    return LabelledSet(root, domains, tuple(out))


# --------------------------------------------------------------------------- the database


@contextmanager
def kept_neo4j(home: Path) -> Iterator[BenchNeo4j]:
    """Like ``fresh_neo4j`` but in a home that outlives the run (``--keep-db``)."""
    home.mkdir(parents=True, exist_ok=True)
    server = EmbeddedNeo4j(home, port=free_port(), jars=JARS, heap="2g", pagecache="1g")
    started = time.perf_counter()
    status = server.start(timeout_s=180)
    try:
        if status.uri is None:
            raise RuntimeError("embedded Neo4j reported ready without a Bolt URI")
        driver = open_driver(status.uri, "neo4j", None)
        try:
            ensure_schema(driver)
            yield BenchNeo4j(driver, status.uri, home, time.perf_counter() - started)
        finally:
            driver.close()
    finally:
        server.stop()


@contextmanager
def step(name: str, steps: dict[str, float]) -> Iterator[None]:
    log(f"{name} ...")
    started = time.perf_counter()
    yield
    steps[name] = time.perf_counter() - started
    log(f"{name}: {steps[name]:.1f} s")


def prepare(
    driver: Driver, data: LabelledSet, steps: dict[str, float], *, loaded: bool = False
) -> dict[str, Any]:
    """Load data (unless ``loaded``), terminologies and code lists, embed the targets (both
    idempotent: a kept database re-checks them quickly); returns what each step did."""
    done: dict[str, Any] = {}
    principal = Principal("bench", Role.TERMINOLOGIST)
    access = TerminologyAccess.for_driver(driver, principal)
    if loaded:
        log(f"load_fhir skipped: the kept database already holds {data.domains}")
        done["load_fhir"] = "kept database"
        return _terminology(driver, data, steps, access, done)
    with step("load_fhir (whole split, no linking)", steps):
        with tempfile.TemporaryDirectory(prefix="medshadow-bench-quarantine-") as quarantine:
            report = load_fhir(
                driver, [data.domains], quarantine_dir=Path(quarantine), link=False, notify=False
            )
            if report.quarantined:  # counted and shown, the good resources stay loaded
                log(f"WARNING: {report.quarantined} resources quarantined {dict(report.reasons)}")
        done["load_fhir"] = {
            "units": report.units,
            "elements": report.facts,
            "quarantined": report.quarantined,
        }
    return _terminology(driver, data, steps, access, done)


def _terminology(
    driver: Driver,
    data: LabelledSet,
    steps: dict[str, float],
    access: TerminologyAccess,
    done: dict[str, Any],
) -> dict[str, Any]:
    with step("code systems synthea, loinc, icd10", steps):
        load = access.load(list(parse(["synthea", "loinc", "icd10"])))
        done["code_systems"] = {f"{s.system} {s.version}": s.concepts for s in load.systems}
    with step("local code lists", steps):
        lists = []
        for clinic in data.clinics:
            for kind, name in CODE_LISTS.items():
                lists.append(
                    parse_local_codes(
                        clinic.code_lists / name, system=local_system(clinic.org, kind)
                    )
                )
        problems = [p for s in lists for p in s.problems]
        if problems:
            log(f"WARNING: {len(problems)} code list rows reported, first: {problems[0]}")
        access.load(lists)
        done["local_codes"] = sum(len(s.concepts) for s in lists)
    for model in ("minilm", "e5"):
        for system in (SNOMED, LOINC):
            with step(f"embed {TARGET_NAMES[system]} ({model})", steps):
                embedded = embed_concepts(driver, model, system=system)
            done[f"embed {system} {model}"] = embedded.embedded
    return done


# --------------------------------------------------------------------------- evaluation


@dataclass(slots=True)
class Item:
    """One local code of one clinic's list, with the truth's rank per method."""

    clinic: str
    kind: str
    uid: str
    display: str
    unit: str | None
    language: str
    truth: str
    truth_display: str | None = None
    ranks: dict[str, int | None] = field(default_factory=dict)
    #: The combined method's top 3 (uid, display, score, features).
    top: list[dict[str, Any]] = field(default_factory=list)

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.kind, self.display, self.unit or "")


def _unit(profile: CodeProfile) -> str | None:
    listed = profile.properties.get("unit")
    if isinstance(listed, str) and listed:
        return listed
    return profile.units[0] if profile.units else None


def _top(candidates: Sequence[Candidate]) -> list[dict[str, Any]]:
    return [
        {
            "uid": c.uid,
            "display": c.display,
            "score": round(c.score, 3),
            "method": c.method,
            "features": {k: round(v, 3) for k, v in sorted(c.features.items())},
        }
        for c in candidates[:3]
    ]


def evaluate(
    driver: Driver,
    data: LabelledSet,
    methods: Sequence[Method],
    *,
    batch_size: int,
) -> tuple[list[Item], dict[tuple[str, str], float]]:
    """Every local code through ``suggest`` per method; (items, seconds per (kind, method))."""
    semantic = SemanticSearch(driver)
    for model in ("minilm", "e5"):  # load both models outside the timing
        semantic.search("warm up", k=1, system=SNOMED, model=model)
    items: list[Item] = []
    seconds: dict[tuple[str, str], float] = {}
    for clinic in data.clinics:
        for kind, target in TARGETS.items():
            profiles = source_codes(driver, local_system(clinic.org, kind))
            listed = []
            for p in profiles:
                truth = clinic.truth.get(p.uid)
                if truth is None:
                    log(f"WARNING: {p.uid} has no ground truth; not scored")
                    continue
                listed.append(p)
                items.append(
                    Item(
                        clinic.org,
                        kind,
                        p.uid,
                        p.display or p.code,
                        _unit(p),
                        language_of(p.display or ""),
                        truth,
                    )
                )
            mine = items[len(items) - len(listed) :]
            for method in methods:
                engine = MappingEngine(driver, semantic=semantic)  # cold caches for each run
                started = time.perf_counter()
                ranked = engine.suggest(listed, target, k=K, method=method, batch_size=batch_size)
                took = time.perf_counter() - started
                seconds[(kind, method)] = seconds.get((kind, method), 0.0) + took
                for item, candidates in zip(mine, ranked, strict=True):
                    uids = [c.uid for c in candidates]
                    item.ranks[method] = uids.index(item.truth) + 1 if item.truth in uids else None
                    if method == "combined":
                        item.top = _top(candidates)
                log(
                    f"{clinic.org} {kind}: {len(listed)} codes, {method} "
                    f"{took:.1f} s, top-1 {_share(mine, method, 1):.3f}"
                )
    return items, seconds


def _share(items: Sequence[Item], method: str, k: int) -> float:
    hits = [i for i in items if (r := i.ranks.get(method)) is not None and r <= k]
    return len(hits) / len(items) if items else 0.0


@dataclass(frozen=True, slots=True)
class Scores:
    n: int
    top1: float
    top5: float
    mrr: float


def _item_scores(item: Item, method: str) -> tuple[float, float, float]:
    r = item.ranks.get(method)
    if r is None:
        return 0.0, 0.0, 0.0
    return float(r == 1), float(r <= 5), 1.0 / r


def scores(items: Sequence[Item], method: str) -> Scores:
    if not items:
        return Scores(0, 0.0, 0.0, 0.0)
    each = [_item_scores(i, method) for i in items]
    return Scores(len(items), *(sum(v[j] for v in each) / len(each) for j in range(3)))


def unique_scores(items: Sequence[Item], method: str) -> Scores:
    """Each (kind, display, unit) once: the mean over the clinics sharing it."""
    groups: dict[tuple[str, str, str], list[Item]] = {}
    for i in items:
        groups.setdefault(i.group, []).append(i)
    if not groups:
        return Scores(0, 0.0, 0.0, 0.0)
    means = []
    for members in groups.values():
        each = [_item_scores(i, method) for i in members]
        means.append(tuple(sum(v[j] for v in each) / len(each) for j in range(3)))
    return Scores(len(groups), *(sum(m[j] for m in means) / len(means) for j in range(3)))


def table(
    items: Sequence[Item], methods: Sequence[Method], seconds: dict[tuple[str, str], float]
) -> tuple[list[list[object]], list[dict[str, Any]]]:
    rows: list[list[object]] = []
    records: list[dict[str, Any]] = []
    for kind, target in TARGETS.items():
        mine = [i for i in items if i.kind == kind]
        for method in methods:
            for language in ("ru", "en", "all"):
                subset = [i for i in mine if language in ("all", i.language)]
                if not subset:
                    continue
                s, u = scores(subset, method), unique_scores(subset, method)
                speed = (
                    len(mine) / seconds[(kind, method)]
                    if language == "all" and seconds.get((kind, method))
                    else None
                )
                rows.append(
                    [
                        f"{TARGET_NAMES[target]} ({kind})",
                        method,
                        language,
                        num(s.n),
                        f"{s.top1:.3f}",
                        f"{s.top5:.3f}",
                        f"{s.mrr:.3f}",
                        num(u.n),
                        f"{u.top1:.3f}",
                        f"{u.top5:.3f}",
                        f"{u.mrr:.3f}",
                        num(speed, 1) if speed is not None else "",
                    ]
                )
                records.append(
                    {
                        "target": target,
                        "kind": kind,
                        "method": method,
                        "language": language,
                        "codes": asdict(s),
                        "unique": asdict(u),
                        "codes_per_s": speed,
                    }
                )
    return rows, records


def _features(f: dict[str, float]) -> str:
    return " ".join(f"{FEATURE_NAMES.get(k, k)} {v:.2f}" for k, v in f.items())


def misses(items: Sequence[Item], displays: dict[str, str | None]) -> list[dict[str, Any]]:
    """The combined method's misses, one per (kind, display, unit, truth) with its clinics."""
    out: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for i in items:
        rank = i.ranks.get("combined")
        if rank == 1:
            continue
        key = (*i.group, i.truth)
        entry = out.setdefault(
            key,
            {
                "kind": i.kind,
                "language": i.language,
                "display": i.display,
                "unit": i.unit,
                "truth": i.truth,
                "truth_display": displays.get(i.truth),
                "ranks": [],
                "clinics": [],
                "top": i.top,
            },
        )
        entry["ranks"].append(rank)
        entry["clinics"].append(i.clinic)
    return sorted(out.values(), key=lambda m: (m["kind"], m["language"], m["display"]))


def print_misses(found: Sequence[dict[str, Any]]) -> None:
    print(f"\n## combined method: misses ({len(found)} distinct local displays)\n")
    for m in found:
        ranks = ",".join("-" if r is None else str(r) for r in m["ranks"])
        unit = f" [{m['unit']}]" if m["unit"] else ""
        print(
            f"{m['kind']} {m['language']} {m['display']!r}{unit} x{len(m['clinics'])}: "
            f"truth {m['truth'].rsplit('|', 1)[-1]} {m['truth_display']!r} rank {ranks}"
        )
        for n, c in enumerate(m["top"], start=1):
            print(
                f"    {n}. {c['uid'].rsplit('|', 1)[-1]} {c['display']!r} {c['score']:.2f} "
                f"[{c['method']}] {_features(c['features'])}"
            )


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=1000, help="bench population size")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="population seed")
    parser.add_argument("--clinics", type=int, default=5, help="busiest clinics to recode")
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to score"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="codes per engine batch")
    parser.add_argument("--misses", action="store_true", help="print the combined method's misses")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="keep the loaded database next to the labelled set and reuse it on the next run "
        "(skips load_fhir; default: a fresh throwaway database)",
    )
    args = parser.parse_args()
    methods: list[Method] = list(args.methods)
    wall = time.perf_counter()

    pop = population(args.patients, args.seed)
    data = labelled_set(pop, args.clinics, args.seed)
    steps: dict[str, float] = {}
    marker = data.root / "neo4j.loaded"
    kept = args.keep_db and marker.is_file()
    if args.keep_db and not kept:
        shutil.rmtree(data.root / "neo4j", ignore_errors=True)  # half-loaded: start over
    with kept_neo4j(data.root / "neo4j") if args.keep_db else fresh_neo4j() as neo:
        steps["start Neo4j"] = neo.start_seconds
        done = prepare(neo.driver, data, steps, loaded=kept)
        if args.keep_db:
            marker.write_text("load_fhir done\n")
        with step("suggest (all lists, all methods)", steps):
            items, seconds = evaluate(neo.driver, data, methods, batch_size=args.batch_size)
        truths = sorted({i.truth for i in items})
        profiles = target_profiles(neo.driver, truths, sample=1)
        displays: dict[str, str | None] = {uid: p.display for uid, p in profiles.items()}
    for i in items:
        i.truth_display = displays.get(i.truth)

    print(
        f"\nMapping engine on {pop.patients} patients (seed {pop.seed}): {len(data.clinics)} "
        f"recoded clinics ({', '.join(c.org for c in data.clinics)}), "
        f"{num(len(items))} local codes, k = {K}\n"
    )
    print_table(["step", "seconds"], [[name, num(s, 1)] for name, s in steps.items()])
    print()
    rows, records = table(items, methods, seconds)
    print_table(
        [
            "target",
            "method",
            "lang",
            "codes",
            "top-1",
            "top-5",
            "MRR",
            "uniq",
            "u top-1",
            "u top-5",
            "u MRR",
            "codes/s",
        ],
        rows,
    )

    missing = [t for t in truths if t not in profiles]
    ambiguous: dict[tuple[str, str, str], set[str]] = {}
    for i in items:
        ambiguous.setdefault(i.group, set()).add(i.truth)
    shared = {g: t for g, t in ambiguous.items() if len(t) > 1}
    examples = f" (e.g. {', '.join(repr(g[1]) for g in list(shared)[:5])})" if shared else ""
    print(
        f"\nceiling: {len(missing)} of {len(truths)} true concepts absent from the graph; "
        f"{len(shared)} (kind, display, unit) stand for more than one true code{examples}"
    )
    summary: dict[str, Any] = {}
    if "combined" in methods:
        print()
        for label, subset in [
            *((TARGET_NAMES[t], [i for i in items if i.kind == k]) for k, t in TARGETS.items()),
            ("all", items),
        ]:
            s, u = scores(subset, "combined"), unique_scores(subset, "combined")
            verdict = "meets" if s.top1 >= TOP1_TARGET and s.top5 >= TOP5_TARGET else "MISSES"
            print(
                f"combined {label}: top-1 {s.top1:.3f} / top-5 {s.top5:.3f} over {s.n} codes "
                f"(unique displays {u.top1:.3f} / {u.top5:.3f} over {u.n}) against the targets "
                f"top-1 >= {TOP1_TARGET:.2f}, top-5 >= {TOP5_TARGET:.2f}: {verdict}"
            )
            summary[label] = {"codes": asdict(s), "unique": asdict(u), "verdict": verdict}
    if "combined" in methods and "lexical" in methods:
        c, b = scores(items, "combined"), scores(items, "lexical")
        cost = sum(v for (_, m), v in seconds.items() if m == "combined") / max(
            sum(v for (_, m), v in seconds.items() if m == "lexical"), 1e-9
        )
        print(
            f"ratio combined / lexical-only baseline: top-1 {c.top1 / max(b.top1, 1e-9):.2f}x "
            f"({c.top1:.3f} vs {b.top1:.3f}), top-5 {c.top5 / max(b.top5, 1e-9):.2f}x, "
            f"MRR {c.mrr / max(b.mrr, 1e-9):.2f}x; time per code {cost:.1f}x"
        )
        summary["ratio_vs_lexical"] = {
            "top1": c.top1 / max(b.top1, 1e-9),
            "top5": c.top5 / max(b.top5, 1e-9),
            "mrr": c.mrr / max(b.mrr, 1e-9),
            "time_per_code": cost,
        }
    found = misses(items, displays) if "combined" in methods else []
    if args.misses and "combined" in methods:
        print_misses(found)
    total = time.perf_counter() - wall
    print(f"\nwall time {total:.0f} s")
    if args.json:
        args.json.write_bytes(
            orjson.dumps(
                {
                    "patients": pop.patients,
                    "seed": pop.seed,
                    "clinics": [c.org for c in data.clinics],
                    "k": K,
                    "steps_s": steps,
                    "prepared": done,
                    "rows": records,
                    "summary": summary,
                    "ceiling": {
                        "truths": len(truths),
                        "absent": missing,
                        "shared_displays": [
                            {"kind": g[0], "display": g[1], "unit": g[2], "truths": sorted(t)}
                            for g, t in shared.items()
                        ],
                    },
                    "misses": found,
                    "items": [asdict(i) for i in items],
                    "wall_s": total,
                },
                option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
            )
        )
        log(f"results written to {args.json}")


if __name__ == "__main__":
    main()
