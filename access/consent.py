"""Patient consent: what a grant or restriction says, and the decision for one principal.

A person's consents are :class:`Consent` rows (stored by ``graph/consent.py``). Each is a
*permit* or a *deny* for a grantee (one practitioner, an organisation — a clinic's domain —,
a registered app, the research bank, or everyone), data categories (``all``, ``vital-signs``,
…) minus excluded categories (``mental-health``, ``hiv``), purposes and a period. Break-glass
access is a time-limited permit of everything for one practitioner, always flagged.

:func:`decide` turns the principal and the person's consents into a :class:`Decision`:

* a patient sees their own data; an app sees the one patient who authorised it, within the
  intersection of the authorisation and the token's scopes;
* a practitioner treating the patient: in the ``opt-out`` model (the embedded default, as in
  national EHRs where every access is logged and shown to the patient) every practitioner may
  read for treatment unless the patient restricted it; in the ``opt-in`` model only a
  practitioner of an organisation holding a record of the patient (care relationship) or one
  with an explicit grant;
* explicit grants to a practitioner or organisation are not narrowed by restrictions aimed at
  everyone ("hide my mental-health data from everyone, except Dr Rivera"); a restriction aimed
  at the grantee itself always wins;
* a data steward sees demographics and records (identity work), never clinical facts;
* researchers never read identified data (only the de-identified export of consenting people).

Everything here is pure: no I/O, so the policy is easy to test exhaustively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any


class ConsentError(ValueError):
    """A consent, scope or category the caller wrote is not valid (message names it)."""


class Purpose(StrEnum):
    TREATMENT = "treatment"
    RESEARCH = "research"
    OPERATIONS = "operations"  # identity work, data quality
    SELF = "self"  # the patient reading their own record
    APP = "app"  # an app the patient authorised
    EMERGENCY = "emergency"  # break-glass


class Category(StrEnum):
    ALL = "all"
    DEMOGRAPHICS = "demographics"
    CONDITIONS = "conditions"
    MEDICATIONS = "medications"
    ALLERGIES = "allergies"
    ENCOUNTERS = "encounters"
    PROCEDURES = "procedures"
    IMMUNIZATIONS = "immunizations"
    OBSERVATIONS = "observations"  # every observation, device reading and derived score
    VITALS = "vital-signs"
    LABORATORY = "laboratory"
    DOCUMENTS = "documents"  # clinical notes and other free text
    # sensitive: a fact is tagged by its codes and text, whatever its resource type
    MENTAL_HEALTH = "mental-health"
    HIV = "hiv"


SENSITIVE = frozenset({Category.MENTAL_HEALTH, Category.HIV})

# What a derived view needs, each set shaped like the facts it is built from: a vital sign is
# an observation and a vital sign, so a grant of either covers it and a restriction of either
# blocks it.
VITAL_FACTS = frozenset({Category.OBSERVATIONS, Category.VITALS})
LAB_FACTS = frozenset({Category.OBSERVATIONS, Category.LABORATORY})
CONDITION_FACTS = frozenset({Category.CONDITIONS})
MEDICATION_FACTS = frozenset({Category.MEDICATIONS})
#: A list of every medication shows psychiatric and antiretroviral drugs too.
ALL_MEDICATIONS = (
    MEDICATION_FACTS,
    frozenset({Category.MEDICATIONS, Category.MENTAL_HEALTH}),
    frozenset({Category.MEDICATIONS, Category.HIV}),
)


class GranteeType(StrEnum):
    PRACTITIONER = "practitioner"
    ORGANISATION = "organisation"
    APP = "app"
    RESEARCH = "research"  # the research data bank (de-identified export)
    EVERYONE = "everyone"


class Model(StrEnum):
    OPT_OUT = "opt-out"
    OPT_IN = "opt-in"


#: Fact label -> its base category (observations add their own ``category`` property).
LABEL_CATEGORY: Mapping[str, Category] = {
    "Condition": Category.CONDITIONS,
    "MedicationRequest": Category.MEDICATIONS,
    "MedicationStatement": Category.MEDICATIONS,
    "AllergyIntolerance": Category.ALLERGIES,
    "Encounter": Category.ENCOUNTERS,
    "Procedure": Category.PROCEDURES,
    "Immunization": Category.IMMUNIZATIONS,
    "Observation": Category.OBSERVATIONS,
    "Symptom": Category.CONDITIONS,
    "Reading": Category.OBSERVATIONS,
    "ReadingSeries": Category.OBSERVATIONS,
    "DiagnosticReport": Category.OBSERVATIONS,
    "Document": Category.DOCUMENTS,
    "CarePlan": Category.CONDITIONS,
}

# Sensitive codes: ICD-10 chapter V (F00-F99) and suicide/self-harm (X60-X84, R45.851, Z91.5);
# HIV (B20-B24, Z21, R75, O98.7). SNOMED CT and LOINC by the text of their display, since the
# project has no SNOMED release to walk the hierarchy (see access/README in the docs).
_ICD_MENTAL = re.compile(r"^(F\d|X[67]\d|X8[0-4]|R45\.?851|Z91\.?5)", re.IGNORECASE)
_ICD_HIV = re.compile(r"^(B2[0-4]|Z21|R75|O98\.?7)", re.IGNORECASE)
# Matched against lower-cased text: a case-insensitive alternation of this size defeats the
# regex engine's literal prefix scan and costs 3-4x more on long notes.
_TEXT: Mapping[Category, re.Pattern[str]] = {
    Category.MENTAL_HEALTH: re.compile(
        r"depress|anxiety|panic|psych|schizo|bipolar|mania|manic|suicid|self[- ]harm|"
        r"post-traumatic|ptsd|eating disorder|anorexia nervosa|bulimia|adhd|attention deficit|"
        r"substance (abuse|use)|alcohol(ism| abuse| dependence| use disorder)|opioid (abuse|use "
        r"disorder|dependence)|drug (abuse|dependence)|dementia|alzheimer|"
        r"sertraline|fluoxetine|citalopram|escitalopram|paroxetine|venlafaxine|duloxetine|"
        r"bupropion|mirtazapine|trazodone|amitriptyline|nortriptyline|lithium|quetiapine|"
        r"olanzapine|risperidone|aripiprazole|haloperidol|clozapine|buprenorphine|naltrexone|"
        r"methadone|phq-?9|gad-?7|patient health questionnaire|generalized anxiety"
    ),
    Category.HIV: re.compile(
        r"\bhiv\b|human immunodeficiency virus|\baids\b|acquired immune deficiency|"
        r"antiretroviral|emtricitabine|tenofovir|efavirenz|dolutegravir|raltegravir|zidovudine|"
        r"lamivudine|abacavir|nevirapine|ritonavir|darunavir|atazanavir|bictegravir|rilpivirine"
    ),
}
_TEXT_FIELDS = ("text", "display", "name", "note", "valueString")
_ICD_SYSTEMS = ("icd", "2.16.840.1.113883.6.90", "2.16.840.1.113883.6.3")


def sensitive_tags(
    codes: Iterable[Mapping[str, Any]],
    texts: Iterable[str] = (),
    looking_for: frozenset[Category] = SENSITIVE,
) -> set[Category]:
    """The sensitive categories (of ``looking_for``) a fact falls in, from its codes (any
    system) and free text."""
    tags: set[Category] = set()
    for code in codes:
        tags |= _code_tags(
            str(code.get("system") or ""),
            str(code.get("code") or ""),
            str(code.get("display") or ""),
        )
    tags &= looking_for
    for text in texts:
        if looking_for - tags:
            tags |= _text_tags(text, looking_for - tags)
    return tags


@lru_cache(maxsize=65_536)
def _code_tags(system: str, code: str, display: str) -> frozenset[Category]:
    """One concept's sensitive tags (a record repeats the same few hundred concepts)."""
    tags = set(_text_tags(display, SENSITIVE))
    if any(s in system.lower() for s in _ICD_SYSTEMS):
        if _ICD_MENTAL.match(code):
            tags.add(Category.MENTAL_HEALTH)
        if _ICD_HIV.match(code):
            tags.add(Category.HIV)
    return frozenset(tags)


def _text_tags(text: str, looking_for: frozenset[Category]) -> set[Category]:
    if not text:
        return set()
    lowered = text.lower()
    return {c for c in looking_for if _TEXT[c].search(lowered)}


def fact_categories(
    labels: Iterable[str],
    fact: Mapping[str, Any],
    codes: Iterable[Mapping[str, Any]] = (),
    looking_for: frozenset[Category] = SENSITIVE,
) -> frozenset[Category]:
    """Every category a fact row belongs to: its type's, an observation's own, and those of
    the sensitive ones in ``looking_for`` it falls in (a decision that names no sensitive
    category needs no free-text scan: :attr:`Decision.sensitive`)."""
    cats: set[Category] = set()
    for label in labels:
        base = LABEL_CATEGORY.get(label)
        if base is not None:
            cats.add(base)
    observed = fact.get("category")
    if observed == Category.VITALS.value:
        cats.add(Category.VITALS)
    elif observed == Category.LABORATORY.value:
        cats.add(Category.LABORATORY)
    if looking_for:
        texts = [str(fact[k]) for k in _TEXT_FIELDS if fact.get(k)]
        cats |= sensitive_tags(codes, texts, looking_for)
    return frozenset(cats)


#: Data kinds of change events that are not clinical fact labels.
_KIND_CATEGORY: Mapping[str, frozenset[Category]] = {
    "Patient": frozenset({Category.DEMOGRAPHICS}),
    "Alert": VITAL_FACTS,
    "RiskAssessment": VITAL_FACTS,
    "CareGap": frozenset({Category.CONDITIONS}),
    "DataRequest": frozenset({Category.CONDITIONS}),
}


def kind_categories(kind: str) -> frozenset[Category]:
    """What knowing that data of this kind changed reveals (unknown kinds: demographics)."""
    base = LABEL_CATEGORY.get(kind)
    if base is not None:
        return frozenset({base})
    return _KIND_CATEGORY.get(kind, frozenset({Category.DEMOGRAPHICS}))


def parse_categories(values: Iterable[str]) -> frozenset[Category]:
    out: set[Category] = set()
    for value in values:
        try:
            out.add(Category(value.strip().lower()))
        except ValueError:
            known = ", ".join(c.value for c in Category)
            raise ConsentError(f"unknown data category {value!r} (known: {known})") from None
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Consent:
    """One grant (``permit``) or restriction (``deny``) a person made, as stored."""

    uid: str
    person: str
    kind: str  # "permit" | "deny"
    grantee_type: GranteeType
    grantee: str  # practitioner subject, organisation (domain uid), app client id, or "*"
    categories: frozenset[Category]
    excluded: frozenset[Category] = frozenset()
    purposes: frozenset[Purpose] = frozenset({Purpose.TREATMENT})
    start: datetime | None = None
    end: datetime | None = None
    status: str = "active"
    break_glass: bool = False

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Consent:
        return cls(
            uid=str(row["uid"]),
            person=str(row["person"]),
            kind=str(row["kind"]),
            grantee_type=GranteeType(row["granteeType"]),
            grantee=str(row["grantee"]),
            categories=parse_categories(row.get("categories") or []),
            excluded=parse_categories(row.get("excluded") or []),
            purposes=frozenset(Purpose(p) for p in row.get("purposes") or []),
            start=row.get("start"),  # graph/consent.py returns Python datetimes
            end=row.get("end"),
            status=str(row.get("status") or "active"),
            break_glass=bool(row.get("breakGlass")),
        )

    def in_force(self, now: datetime) -> bool:
        return (
            self.status == "active"
            and (self.start is None or self.start <= now)
            and (self.end is None or now < self.end)
        )

    def covers(self, cats: frozenset[Category]) -> bool:
        """A permit covers a fact when it names one of its categories and excludes none."""
        named = Category.ALL in self.categories or bool(cats & self.categories)
        return named and not (cats & self.excluded)

    def blocks(self, cats: frozenset[Category]) -> bool:
        """A deny blocks a fact of any category it names (``all``: everything)."""
        return Category.ALL in self.categories or bool(cats & self.categories)


@dataclass(frozen=True, slots=True)
class Who:
    """What the consent policy needs to know of a principal (see access/policy.Principal)."""

    #: "practitioner" | "patient" | "app" | "steward" | "admin" | "research" (the export) | "none"
    kind: str
    subject: str
    organisation: str | None = None
    patient: str | None = None  # the patient's own person uid, or the app's authorised patient
    app: str | None = None  # client id
    authorisation: str | None = None  # the app's consent uid (token claim ``authz``)
    scopes: frozenset[Category] = frozenset()  # an app token's categories (from its scopes)


@dataclass(frozen=True, slots=True)
class Decision:
    """May ``who`` read ``person``'s data of given categories, and on what basis."""

    person: str
    purpose: Purpose
    permits: tuple[tuple[str, Consent, tuple[Consent, ...]], ...] = ()
    break_glass: str | None = None
    #: categories shown as "withheld by the patient's consent" (never whether data exists)
    restricted: frozenset[Category] = field(default=frozenset())

    @property
    def any(self) -> bool:
        """Does some permit survive (not every one closed by a restriction of ``all``)?"""
        return any(
            not any(Category.ALL in d.categories for d in denies) for _, _, denies in self.permits
        )

    def allows(self, cats: frozenset[Category]) -> bool:
        for _basis, permit, denies in self.permits:
            if not permit.covers(cats):
                continue
            if any(d.blocks(cats) for d in denies):
                continue
            return True
        return False

    @property
    def unrestricted(self) -> bool:
        """Some permit covers every category with no exclusion and no restriction against it:
        every fact is allowed, so nothing needs categorising (the common case, a hot path)."""
        return any(
            Category.ALL in permit.categories and not permit.excluded and not denies
            for _, permit, denies in self.permits
        )

    @property
    def sensitive(self) -> frozenset[Category]:
        """The sensitive categories this decision turns on: those a consent behind it names
        (:meth:`Consent.covers` and :meth:`Consent.blocks` only look at categories a consent
        names, so a fact's other sensitive tags cannot change :meth:`allows`)."""
        named: set[Category] = set()
        for _, permit, denies in self.permits:
            named |= permit.categories | permit.excluded
            for deny in denies:
                named |= deny.categories
        return SENSITIVE & frozenset(named)

    @property
    def basis(self) -> str:
        """Why access was given (for the audit trail): ``self``, ``consent:<uid>``, …"""
        return "; ".join(b for b, _, _ in self.permits) or "none"


#: A permit of everything with no consent row behind it (self, implied treatment, operations).
_ALL_PERMIT = Consent(
    uid="-",
    person="-",
    kind="permit",
    grantee_type=GranteeType.EVERYONE,
    grantee="*",
    categories=frozenset({Category.ALL}),
)
_DEMOGRAPHICS = Consent(
    uid="-",
    person="-",
    kind="permit",
    grantee_type=GranteeType.EVERYONE,
    grantee="*",
    categories=frozenset({Category.DEMOGRAPHICS}),
)


def _targets(consent: Consent, who: Who) -> bool:
    """Is the consent aimed at this principal specifically (not at everyone)?"""
    t = consent.grantee_type
    if t is GranteeType.PRACTITIONER:
        return who.kind == "practitioner" and consent.grantee == who.subject
    if t is GranteeType.ORGANISATION:
        return who.kind == "practitioner" and consent.grantee == who.organisation
    if t is GranteeType.APP:
        return who.kind == "app" and consent.grantee == who.app
    return False


def decide(
    who: Who,
    person: str,
    consents: Sequence[Consent],
    *,
    purpose: Purpose,
    now: datetime,
    model: Model = Model.OPT_OUT,
    care_domains: Iterable[str] = (),
) -> Decision:
    """The decision for one person; ``consents`` are that person's (any state)."""
    live = [c for c in consents if c.in_force(now) and c.person == person]
    permits: list[tuple[str, Consent, tuple[Consent, ...]]] = []
    everyone_denies = tuple(
        c for c in live if c.kind == "deny" and c.grantee_type is GranteeType.EVERYONE
    )
    targeted_denies = tuple(c for c in live if c.kind == "deny" and _targets(c, who))
    restricted = frozenset(
        cat for c in everyone_denies + targeted_denies for cat in c.categories
    ) | frozenset(
        cat for c in live if c.kind == "permit" and _targets(c, who) for cat in c.excluded
    )
    if who.kind == "patient":
        if who.patient == person:
            permits.append(("self", _ALL_PERMIT, ()))
        return Decision(person, Purpose.SELF, tuple(permits))
    if who.kind == "app":
        for c in live:
            if (
                c.kind == "permit"
                and c.grantee_type is GranteeType.APP
                and c.grantee == who.app
                and c.uid == who.authorisation
                and who.patient == person
            ):
                scoped = Consent(
                    uid=c.uid,
                    person=person,
                    kind="permit",
                    grantee_type=GranteeType.APP,
                    grantee=c.grantee,
                    categories=_narrow(c.categories, who.scopes),
                    excluded=c.excluded,
                )
                permits.append((f"app:{c.uid}", scoped, targeted_denies))
        return Decision(person, Purpose.APP, tuple(permits), restricted=restricted)
    if who.kind == "admin":
        return Decision(person, Purpose.OPERATIONS, (("admin", _ALL_PERMIT, ()),))
    if who.kind == "steward":
        return Decision(person, Purpose.OPERATIONS, (("operations", _DEMOGRAPHICS, ()),))
    if who.kind == "research":
        for c in live:
            if (
                c.kind == "permit"
                and c.grantee_type in (GranteeType.RESEARCH, GranteeType.EVERYONE)
                and Purpose.RESEARCH in c.purposes
            ):
                permits.append((f"consent:{c.uid}", c, everyone_denies))
        return Decision(person, Purpose.RESEARCH, tuple(permits), restricted=restricted)
    if who.kind != "practitioner":
        return Decision(person, purpose)
    for c in live:
        if c.break_glass and c.grantee == who.subject:
            return Decision(
                person,
                Purpose.EMERGENCY,
                ((f"break-glass:{c.uid}", _ALL_PERMIT, ()),),
                break_glass=c.uid,
            )
    for c in live:
        if c.kind == "permit" and not c.break_glass and purpose in c.purposes and _targets(c, who):
            permits.append((f"consent:{c.uid}", c, targeted_denies))
    for c in live:
        if c.kind == "permit" and c.grantee_type is GranteeType.EVERYONE and purpose in c.purposes:
            permits.append((f"consent:{c.uid}", c, everyone_denies + targeted_denies))
    if purpose is Purpose.TREATMENT:
        implied = model is Model.OPT_OUT or (
            who.organisation is not None and who.organisation in set(care_domains)
        )
        if implied:
            basis = "implied:treatment" if model is Model.OPT_OUT else "care-relationship"
            permits.append((basis, _ALL_PERMIT, everyone_denies + targeted_denies))
    return Decision(person, purpose, tuple(permits), restricted=restricted)


def _narrow(granted: frozenset[Category], scopes: frozenset[Category]) -> frozenset[Category]:
    """Categories both the patient's authorisation and the token's scopes allow."""
    if Category.ALL in scopes:
        return granted
    if Category.ALL in granted:
        return scopes
    out = granted & scopes
    # a scope of all observations admits a granted observation subcategory and vice versa
    if Category.OBSERVATIONS in scopes:
        out |= granted & {Category.VITALS, Category.LABORATORY}
    if Category.OBSERVATIONS in granted:
        out |= scopes & {Category.VITALS, Category.LABORATORY}
    return frozenset(out)


# --- SMART-on-FHIR-like scopes ---------------------------------------------------------------

_RESOURCE_CATEGORY: Mapping[str, Category] = {
    "*": Category.ALL,
    "Patient": Category.DEMOGRAPHICS,
    "Condition": Category.CONDITIONS,
    "MedicationRequest": Category.MEDICATIONS,
    "MedicationStatement": Category.MEDICATIONS,
    "Medication": Category.MEDICATIONS,
    "AllergyIntolerance": Category.ALLERGIES,
    "Encounter": Category.ENCOUNTERS,
    "Procedure": Category.PROCEDURES,
    "Immunization": Category.IMMUNIZATIONS,
    "Observation": Category.OBSERVATIONS,
}
_SCOPE = re.compile(
    r"^patient/(?P<res>\*|[A-Z][A-Za-z]+)\.(?P<perm>read|\*|c?r?u?d?s?)"
    r"(?:\?category=(?:[^|&]*\|)?(?P<cat>[A-Za-z-]+))?$"
)


@dataclass(frozen=True, slots=True)
class Scope:
    text: str
    category: Category


def parse_scope(text: str) -> Scope:
    """One scope: ``patient/Observation.read``, ``patient/Observation.rs?category=vital-signs``.

    SMART v1 (``read``) and v2 (``rs``) read scopes; ``?category=`` narrows Observation to
    ``vital-signs``/``laboratory`` and any resource to a sensitive category. Write scopes are
    refused (apps read; patients write through the portal).
    """
    m = _SCOPE.match(text.strip())
    if m is None:
        raise ConsentError(
            f"scope {text!r} is not of the form patient/<Resource>.read or "
            "patient/<Resource>.rs[?category=<code>]"
        )
    perm = m["perm"]
    if perm == "*" or (perm != "read" and any(ch in perm for ch in "cud")):
        raise ConsentError(f"scope {text!r} asks to write; apps may only read")
    if perm != "read" and "r" not in perm and "s" not in perm:
        raise ConsentError(f"scope {text!r} grants no read")
    base = _RESOURCE_CATEGORY.get(m["res"])
    if base is None:
        known = ", ".join(sorted(_RESOURCE_CATEGORY))
        raise ConsentError(f"scope {text!r}: unknown resource type (known: {known})")
    if m["cat"]:
        (sub,) = parse_categories([m["cat"]])
        return Scope(text.strip(), sub)
    return Scope(text.strip(), base)


def scope_categories(scopes: Iterable[str]) -> frozenset[Category]:
    return frozenset(parse_scope(s).category for s in scopes)
