"""The checks of a medication review, over a reconciled list (pure: no graph).

* **interactions**: every curated interaction both of whose sides match two different items
  (a substance, or a class the substance belongs to);
* **duplicate therapy**: one ingredient prescribed by two clinics, or two items of one
  therapeutic class (``duplicate_classes`` in ``data/safety_rules.yaml``);
* **polypharmacy**: counts of active items against the >= 5 / >= 10 definitions;
* **patient context** (age, eGFR, pregnancy, when the graph has them): rules that raise or
  annotate an interaction, or flag one drug in one patient state, each finding naming its rule.

Ranking is the answer to override fatigue: a finding's ``priority`` is ``interrupt`` only for
contraindicated and major findings (after context), ``review`` for moderate, ``info`` for minor;
within a priority, findings sort by severity, then by context raised, then by whether clinic
prescriptions (not only patient reports) are involved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drugs.knowledge import KnowledgeIndex
from drugs.model import Finding, MedItem, Severity
from drugs.names import fold

RULES_PATH = Path(__file__).with_name("data") / "safety_rules.yaml"


class RulesError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class When(_Strict):
    age_min: float | None = None
    egfr_below: float | None = None
    pregnant: bool | None = None


class Match(_Strict):
    text: str | None = None  # regex over the interaction's folded mechanism and management
    classes_both: tuple[str, ...] = ()
    classes_any: tuple[str, ...] = ()
    ingredients: tuple[str, ...] = ()


class ContextRule(_Strict):
    id: str
    kind: Literal["interaction", "drug"]
    when: When
    match: Match
    effect: Literal["raise", "annotate"] | None = None
    severity: Severity | None = None
    reason: str
    reference: str


class PolypharmacyLevel(_Strict):
    min: int = Field(ge=2)
    severity: Severity
    label: str


class Polypharmacy(_Strict):
    reference: str
    levels: tuple[PolypharmacyLevel, ...]


class SafetyRules(_Strict):
    duplicate_classes: tuple[str, ...]
    polypharmacy: Polypharmacy
    context: tuple[ContextRule, ...]


@cache
def default_rules(path: Path = RULES_PATH) -> SafetyRules:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        rules = SafetyRules.model_validate(data)
    except (OSError, yaml.YAMLError) as e:
        raise RulesError(f"{path}: cannot read the rules: {e}") from e
    except ValidationError as e:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise RulesError(f"{path}: {detail}") from e
    for rule in rules.context:
        if (rule.kind == "drug") != (rule.severity is not None):
            raise RulesError(f"{path}: rule {rule.id}: a drug rule needs a severity, only it")
        if (rule.kind == "interaction") != (rule.effect is not None):
            raise RulesError(f"{path}: rule {rule.id}: an interaction rule needs an effect")
    return rules


@dataclass(frozen=True, slots=True)
class PatientContext:
    """What the graph knows of the patient that changes a drug's risk."""

    age: float | None = None
    egfr: float | None = None
    egfr_source: str | None = None  # "measured (domain)" or "derived: CKD-EPI 2021 ..."
    pregnant: bool = False
    pregnancy_evidence: str | None = None

    def facts(self) -> dict[str, Any]:
        return {"age": self.age, "egfr": self.egfr}


def _applies(when: When, ctx: PatientContext) -> bool:
    if when.age_min is not None and (ctx.age is None or ctx.age < when.age_min):
        return False
    if when.egfr_below is not None and (ctx.egfr is None or ctx.egfr >= when.egfr_below):
        return False
    return not (when.pregnant is not None and ctx.pregnant != when.pregnant)


PRIORITY = {
    Severity.CONTRAINDICATED: "interrupt",
    Severity.MAJOR: "interrupt",
    Severity.MODERATE: "review",
    Severity.MINOR: "info",
}
PRIORITY_ORDER = ("interrupt", "review", "info")
_KIND_ORDER = {"interaction": 0, "context": 1, "duplicate": 2, "polypharmacy": 3}


def _score(severity: Severity, raised: bool, prescribed: bool, kind: str) -> float:
    return severity.rank * 10 + (3 if raised else 0) + (1 if prescribed else 0) - _KIND_ORDER[kind]


def _finding(
    kind: str,
    severity: Severity,
    title: str,
    items: tuple[str, ...],
    evidence: str,
    *,
    raised: bool = False,
    prescribed: bool = False,
    **details: Any,
) -> Finding:
    """A finding whose severity is its own (no thesaurus base): priority and score follow."""
    return Finding(
        kind=kind,
        severity=severity,
        base_severity=severity,
        priority=PRIORITY[severity],
        title=title,
        items=items,
        evidence=evidence,
        score=_score(severity, raised, prescribed, kind),
        **details,
    )


@dataclass(frozen=True, slots=True)
class PairMatch:
    """A curated interaction found between two items."""

    uid: str
    a_item: str
    b_item: str
    via: tuple[str, str]
    props: dict[str, Any]


def pair_interactions(
    items: Sequence[MedItem], index: KnowledgeIndex, rows: Iterable[Any]
) -> list[PairMatch]:
    """Interactions (``graph.drugs.InteractionRow``) placed on the item pairs they concern; one
    per (interaction, unordered item pair)."""
    anchors = {item.key: _anchors(item, index) for item in items}
    out: dict[tuple[str, str, str], PairMatch] = {}
    for row in rows:
        for x in items:
            if row.a_code not in anchors[x.key]:
                continue
            for y in items:
                if y.key == x.key or row.b_code not in anchors[y.key]:
                    continue
                a, b = sorted((x.key, y.key))
                out.setdefault(
                    (row.uid, a, b),
                    PairMatch(row.uid, x.key, y.key, (row.a_code, row.b_code), row.props),
                )
    return list(out.values())


def _anchors(item: MedItem, index: KnowledgeIndex) -> set[str]:
    out: set[str] = set()
    for ing in item.ingredients:
        out |= index.anchors(ing)
    return out


def anchors_of(items: Iterable[MedItem], index: KnowledgeIndex) -> list[str]:
    out: set[str] = set()
    for item in items:
        out |= _anchors(item, index)
    return sorted(out)


def review(
    items: Sequence[MedItem],
    index: KnowledgeIndex,
    matches: Sequence[PairMatch],
    ctx: PatientContext | None = None,
    rules: SafetyRules | None = None,
) -> list[Finding]:
    """Every finding over ``items``, ranked (most dangerous first)."""
    rules = rules or default_rules()
    ctx = ctx or PatientContext()
    by_key = {i.key: i for i in items}
    findings = _one_per_pair([_interaction(m, by_key, index, ctx, rules) for m in matches])
    findings += _duplicates(items, index, rules)
    findings += _polypharmacy(items, rules)
    findings += _drug_context(items, index, ctx, rules)
    return rank(findings)


def _one_per_pair(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per drug pair: the thesaurus often has a substance-level and a class-level
    entry for the same two drugs; the strongest leads and the others are listed under it."""
    pairs: dict[frozenset[str], list[Finding]] = {}
    for f in findings:
        pairs.setdefault(frozenset(f.items), []).append(f)
    out = []
    for group in pairs.values():
        lead, *rest = rank(group)
        also = tuple(f"{f.severity.value}: {f.source_level} ({' + '.join(f.via)})" for f in rest)
        out.append(replace(lead, also=lead.also + also) if also else lead)
    return out


def rank(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.score, f.title))


def _interaction(
    m: PairMatch,
    items: dict[str, MedItem],
    index: KnowledgeIndex,
    ctx: PatientContext,
    rules: SafetyRules,
) -> Finding:
    p = m.props
    a, b = items[m.a_item], items[m.b_item]
    chosen, conditional = _levels(p, index, {*_substances(a, index), *_substances(b, index)})
    base = max((sev for sev, _, _ in chosen), key=lambda s: s.rank)
    severity = base
    applied = []
    text = fold(" ".join([p.get("mechanism") or "", *(mg for _, _, mg in chosen)]))
    a_classes = {c for ing in items[m.a_item].ingredients for c in index.classes_of(ing)}
    b_classes = {c for ing in items[m.b_item].ingredients for c in index.classes_of(ing)}
    for rule in rules.context:
        if rule.kind != "interaction" or not _applies(rule.when, ctx):
            continue
        mt = rule.match
        hit = (
            (mt.text is not None and re.search(mt.text, text) is not None)
            or (bool(mt.classes_both) and bool(set(mt.classes_both) & a_classes & b_classes))
            or (bool(mt.classes_any) and bool(set(mt.classes_any) & (a_classes | b_classes)))
        )
        if not hit:
            continue
        applied.append(f"{rule.id}: {_reason(rule.reason, ctx)} ({rule.reference})")
        if rule.effect == "raise":
            severity = severity.raised()
    source_level = next(lvl for sev, lvl, _ in chosen if sev == base)
    management = " | ".join(mg for _, _, mg in chosen if mg) or None
    prescribed = any(s.prescribed for s in a.sources) and any(s.prescribed for s in b.sources)
    return Finding(
        kind="interaction",
        severity=severity,
        base_severity=base,
        priority=PRIORITY[severity],
        title=f"{a.display} + {b.display}",
        items=(a.key, b.key),
        evidence=f"{p.get('source')} thesaurus {p.get('version')}",
        source_level=source_level,
        mechanism=p.get("mechanism") or None,
        management=management,
        via=(index.display(m.via[0]), index.display(m.via[1])),
        rules=tuple(applied),
        interaction=m.uid,
        score=_score(severity, severity != base, prescribed, "interaction"),
        also=conditional,
    )


_Level = tuple[Severity, str, str]  # severity, the source's wording, its advice/conditions


def _substances(item: MedItem, index: KnowledgeIndex) -> set[str]:
    return {code for ing in item.ingredients for code in index.substances(ing)}


def _levels(
    props: dict[str, Any], index: KnowledgeIndex, pair: set[str]
) -> tuple[list[_Level], tuple[str, ...]]:
    """The entry's levels that apply to this pair, and the others as notes.

    An entry may carry several levels, each restricted by its text to certain drugs:
    "sedatives + other sedatives" is contraindicated only *with sodium oxybate* and "to take
    into account" for all the others. A level whose text names thesaurus substances applies
    when the pair includes one of them; a level naming none applies to every pair. When no
    level applies, the least severe one stands (the entry itself matched)."""
    levels = [
        (Severity(sev), str(lvl), str(mg))
        for sev, lvl, mg in zip(
            props.get("levelSeverities") or (props["severity"],),
            props.get("sourceLevels") or ("",),
            props.get("management") or ("",),
            strict=False,
        )
    ]
    if len(levels) == 1:
        return levels, ()
    chosen: list[_Level] = []
    skipped: list[_Level] = []
    for level in levels:
        named = index.named_in(level[2])
        (chosen if not named or named & pair else skipped).append(level)
    if not chosen:
        least = min(levels, key=lambda lv: lv[0].rank)
        chosen, skipped = [least], [lv for lv in levels if lv is not least]
    notes = tuple(
        f"{sev.value} only with other drugs: {lvl} {mg}".strip() for sev, lvl, mg in skipped
    )
    return chosen, notes


def _reason(template: str, ctx: PatientContext) -> str:
    try:
        return template.format(
            **{k: v if v is not None else float("nan") for k, v in ctx.facts().items()}
        )
    except (KeyError, ValueError):
        return template


def _duplicates(
    items: Sequence[MedItem], index: KnowledgeIndex, rules: SafetyRules
) -> list[Finding]:
    out = []
    for item in items:
        if item.active and len(item.prescribers) > 1:
            out.append(
                _finding(
                    "duplicate",
                    Severity.MAJOR,
                    f"{item.display} prescribed by {len(item.prescribers)} clinics",
                    (item.key,),
                    "medshadow duplicate therapy (same ingredient, several prescribers)",
                    prescribed=True,
                    management="Confirm which prescription is current; stop the other.",
                    via=tuple(item.prescribers),
                )
            )
    wanted = set(rules.duplicate_classes)
    for x, y in combinations([i for i in items if i.active and i.resolved], 2):
        if same := sorted(set(x.ingredients) & set(y.ingredients)):
            # one ingredient in two products (paracetamol alone and in a combination): the
            # classic route to an unintended double dose
            names = ", ".join(same)
            out.append(
                _finding(
                    "duplicate",
                    Severity.MAJOR,
                    f"{x.display} + {y.display}: {names} in both",
                    (x.key, y.key),
                    "medshadow duplicate therapy (same ingredient in two products)",
                    prescribed=any(s.prescribed for s in x.sources)
                    and any(s.prescribed for s in y.sources),
                    management="Count the total daily dose of the shared ingredient.",
                    via=tuple(same),
                )
            )
            continue
        shared = (
            {c for ing in x.ingredients for c in index.classes_of(ing)}
            & {c for ing in y.ingredients for c in index.classes_of(ing)}
            & wanted
        )
        for cls in sorted(shared):
            out.append(
                _finding(
                    "duplicate",
                    Severity.MODERATE,
                    f"{x.display} + {y.display}: two {index.display(cls)}",
                    (x.key, y.key),
                    "medshadow duplicate therapy (same therapeutic class, ANSM classes)",
                    management="Check that both are intended (e.g. deliberate combination).",
                    via=(index.display(cls),),
                )
            )
    return out


def _polypharmacy(items: Sequence[MedItem], rules: SafetyRules) -> list[Finding]:
    active = [i for i in items if i.active]
    for level in sorted(rules.polypharmacy.levels, key=lambda lv: -lv.min):
        if len(active) >= level.min:
            return [
                _finding(
                    "polypharmacy",
                    level.severity,
                    f"{level.label}: {len(active)} active medicines (>= {level.min})",
                    tuple(i.key for i in active),
                    rules.polypharmacy.reference,
                    management="Review indication and benefit of each medicine (deprescribing).",
                )
            ]
    return []


def _drug_context(
    items: Sequence[MedItem], index: KnowledgeIndex, ctx: PatientContext, rules: SafetyRules
) -> list[Finding]:
    out = []
    for rule in rules.context:
        if rule.kind != "drug" or rule.severity is None or not _applies(rule.when, ctx):
            continue
        for item in items:
            if not item.active:
                continue
            classes = {c for ing in item.ingredients for c in index.classes_of(ing)}
            hit = set(rule.match.ingredients) & set(item.ingredients) or (
                set(rule.match.classes_any) & classes
            )
            if not hit:
                continue
            out.append(
                _finding(
                    "context",
                    rule.severity,
                    f"{item.display}: {_reason(rule.reason, ctx)}",
                    (item.key,),
                    rule.reference,
                    raised=True,
                    prescribed=any(s.prescribed for s in item.sources),
                    via=tuple(index.display(c) for c in sorted(hit)),
                    rules=(rule.id,),
                )
            )
    return out


def already_taking(existing: MedItem, proposed: MedItem) -> Finding:
    """A proposed prescription of something the patient already has (any source)."""
    sources = ", ".join(sorted({s.domain for s in existing.sources if s.active}))
    return _finding(
        "duplicate",
        Severity.MAJOR,
        f"{proposed.display} is already active ({sources})",
        (existing.key, proposed.key),
        "medshadow duplicate therapy (same ingredient)",
        prescribed=True,
        management="Adjust the existing prescription instead of adding a second one.",
        via=tuple(sorted({s.domain for s in existing.sources if s.active})),
    )
