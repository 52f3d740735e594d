"""The consent policy (access/consent.py) as pure decisions: who sees which categories of whom.

Expected answers are written out per case, not recomputed with the code under test. The model
follows the issue: roles decide the kind of operation, consent decides whose data; restrictions
aimed at everyone do not narrow an explicit grant; a restriction aimed at the grantee wins;
break-glass opens everything for a limited time, flagged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from access.consent import (
    Category,
    Consent,
    ConsentError,
    GranteeType,
    Model,
    Purpose,
    Who,
    decide,
    fact_categories,
    parse_scope,
    scope_categories,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
X = "person:x"
DR = Who("practitioner", "dr-rivera", organisation="mis:clinic-a")
DR_B = Who("practitioner", "dr-chen", organisation="mis:clinic-b")

VITAL = frozenset({Category.OBSERVATIONS, Category.VITALS})
LAB = frozenset({Category.OBSERVATIONS, Category.LABORATORY})
DEPRESSION = frozenset({Category.CONDITIONS, Category.MENTAL_HEALTH})
DIABETES = frozenset({Category.CONDITIONS})
DEMO = frozenset({Category.DEMOGRAPHICS})


def consent(kind: str, gtype: GranteeType, grantee: str = "*", **kw: object) -> Consent:
    base: dict[str, object] = {
        "categories": frozenset({Category.ALL}),
        "purposes": frozenset({Purpose.TREATMENT}),
    }
    base.update(kw)
    return Consent(f"c:{kind}:{grantee}", X, kind, gtype, grantee, **base)  # type: ignore[arg-type]


def sees(who: Who, consents: list[Consent], facts: frozenset[Category], **kw: object) -> bool:
    purpose = kw.pop("purpose", Purpose.TREATMENT)
    return decide(who, X, consents, purpose=purpose, now=NOW, **kw).allows(facts)  # type: ignore[arg-type]


def test_opt_out_practitioner_reads_for_treatment_unless_restricted() -> None:
    assert sees(DR, [], DEPRESSION)
    hide_mh = consent("deny", GranteeType.EVERYONE, categories=frozenset({Category.MENTAL_HEALTH}))
    assert sees(DR, [hide_mh], DIABETES)
    assert not sees(DR, [hide_mh], DEPRESSION)
    closed = consent("deny", GranteeType.EVERYONE)
    assert not sees(DR, [closed], DEMO)


def test_opt_in_needs_a_care_relationship_or_a_grant() -> None:
    assert not sees(DR, [], DIABETES, model=Model.OPT_IN)
    assert sees(DR, [], DIABETES, model=Model.OPT_IN, care_domains=["mis:clinic-a"])
    assert not sees(DR_B, [], DIABETES, model=Model.OPT_IN, care_domains=["mis:clinic-a"])
    to_b = consent("permit", GranteeType.ORGANISATION, "mis:clinic-b")
    assert sees(DR_B, [to_b], DIABETES, model=Model.OPT_IN)


def test_explicit_grant_beats_a_restriction_aimed_at_everyone_but_not_one_aimed_at_the_grantee() -> (
    None
):
    closed = consent("deny", GranteeType.EVERYONE)
    to_rivera = consent("permit", GranteeType.PRACTITIONER, "dr-rivera")
    assert sees(DR, [closed, to_rivera], DEPRESSION)
    assert not sees(DR_B, [closed, to_rivera], DEMO)
    deny_rivera_mh = consent(
        "deny",
        GranteeType.PRACTITIONER,
        "dr-rivera",
        categories=frozenset({Category.MENTAL_HEALTH}),
    )
    assert not sees(DR, [closed, to_rivera, deny_rivera_mh], DEPRESSION)
    assert sees(DR, [closed, to_rivera, deny_rivera_mh], DIABETES)


def test_grant_categories_exclusions_purposes_and_period() -> None:
    closed = consent("deny", GranteeType.EVERYONE)
    vitals_only = consent(
        "permit", GranteeType.ORGANISATION, "mis:clinic-b", categories=frozenset({Category.VITALS})
    )
    assert sees(DR_B, [closed, vitals_only], VITAL)
    assert not sees(DR_B, [closed, vitals_only], LAB)
    no_mh = consent(
        "permit", GranteeType.PRACTITIONER, "dr-chen", excluded=frozenset({Category.MENTAL_HEALTH})
    )
    assert sees(DR_B, [closed, no_mh], DIABETES)
    assert not sees(DR_B, [closed, no_mh], DEPRESSION)
    research_only = consent(
        "permit", GranteeType.PRACTITIONER, "dr-chen", purposes=frozenset({Purpose.RESEARCH})
    )
    assert not sees(DR_B, [closed, research_only], DIABETES)
    expired = consent("permit", GranteeType.PRACTITIONER, "dr-chen", end=NOW - timedelta(days=1))
    future = consent("permit", GranteeType.PRACTITIONER, "dr-chen", start=NOW + timedelta(days=1))
    revoked = Consent(
        "c:r",
        X,
        "permit",
        GranteeType.PRACTITIONER,
        "dr-chen",
        frozenset({Category.ALL}),
        status="revoked",
    )
    for gone in (expired, future, revoked):
        assert not sees(DR_B, [closed, gone], DIABETES)


def test_break_glass_opens_everything_for_its_practitioner_only_and_is_flagged() -> None:
    closed = consent("deny", GranteeType.EVERYONE)
    glass = consent(
        "permit",
        GranteeType.PRACTITIONER,
        "dr-chen",
        break_glass=True,
        purposes=frozenset({Purpose.EMERGENCY}),
        start=NOW - timedelta(minutes=5),
        end=NOW + timedelta(minutes=55),
    )
    d = decide(DR_B, X, [closed, glass], purpose=Purpose.TREATMENT, now=NOW)
    assert d.allows(DEPRESSION)
    assert d.break_glass == glass.uid
    assert d.purpose is Purpose.EMERGENCY
    assert not sees(DR, [closed, glass], DEMO)
    later = decide(
        DR_B, X, [closed, glass], purpose=Purpose.TREATMENT, now=NOW + timedelta(hours=1)
    )
    assert not later.any


def test_patients_apps_stewards_researchers() -> None:
    me = Who("patient", "acct", patient=X)
    other = Who("patient", "acct2", patient="person:y")
    closed = consent("deny", GranteeType.EVERYONE)
    assert sees(me, [closed], DEPRESSION, purpose=Purpose.SELF)
    assert not sees(other, [], DEMO, purpose=Purpose.SELF)
    authz = consent(
        "permit",
        GranteeType.APP,
        "app-1",
        categories=frozenset({Category.VITALS, Category.CONDITIONS}),
        purposes=frozenset({Purpose.APP}),
    )
    app = Who(
        "app",
        "app-1",
        patient=X,
        app="app-1",
        authorisation=authz.uid,
        scopes=frozenset({Category.OBSERVATIONS}),
    )
    # the token's scopes (all observations) narrowed by the approval (vital signs, conditions)
    assert sees(app, [authz], VITAL, purpose=Purpose.APP)
    assert not sees(app, [authz], LAB, purpose=Purpose.APP)
    assert not sees(app, [authz], DIABETES, purpose=Purpose.APP)  # not in the token's scopes
    stale = Who(
        "app",
        "app-1",
        patient=X,
        app="app-1",
        authorisation="c:old",
        scopes=frozenset({Category.ALL}),
    )
    assert not sees(stale, [authz], VITAL, purpose=Purpose.APP)
    steward = Who("steward", "s")
    assert sees(steward, [closed], DEMO)
    assert not sees(steward, [], DIABETES)
    research = Who("research", "bank")
    assert not sees(research, [], DIABETES, purpose=Purpose.RESEARCH)
    opted_in = consent(
        "permit",
        GranteeType.RESEARCH,
        categories=frozenset({Category.ALL}),
        excluded=frozenset({Category.HIV}),
        purposes=frozenset({Purpose.RESEARCH}),
    )
    assert sees(research, [opted_in], DIABETES, purpose=Purpose.RESEARCH)
    assert not sees(
        research,
        [opted_in],
        frozenset({Category.CONDITIONS, Category.HIV}),
        purpose=Purpose.RESEARCH,
    )
    nobody = Who("none", "anon")
    assert not sees(nobody, [], DEMO)


def test_sensitive_facts_are_tagged_by_code_and_text() -> None:
    icd = fact_categories(
        ["Condition"], {}, [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "F32.1"}]
    )
    assert Category.MENTAL_HEALTH in icd
    hiv = fact_categories(
        ["Condition"], {}, [{"system": "urn:oid:2.16.840.1.113883.6.90", "code": "B20"}]
    )
    assert Category.HIV in hiv
    snomed = fact_categories(
        ["Condition"],
        {},
        [
            {
                "system": "http://snomed.info/sct",
                "code": "370143000",
                "display": "Major depressive disorder (disorder)",
            }
        ],
    )
    assert snomed == DEPRESSION
    lab = fact_categories(
        ["Observation"],
        {"category": "laboratory"},
        [
            {
                "system": "http://loinc.org",
                "code": "7917-8",
                "display": "HIV 1 Ab [Presence] in Serum",
            }
        ],
    )
    assert lab == {Category.OBSERVATIONS, Category.LABORATORY, Category.HIV}
    med = fact_categories(["MedicationRequest"], {}, [{"display": "sertraline 50 MG Oral Tablet"}])
    assert med == {Category.MEDICATIONS, Category.MENTAL_HEALTH}
    plain = fact_categories(
        ["Observation"], {"category": "vital-signs"}, [{"display": "Heart rate"}]
    )
    assert plain == VITAL


def test_a_decision_scans_only_for_the_sensitive_categories_its_consents_name() -> None:
    """The guard categorises a fact only for what the decision turns on; the answer must be
    the one a full scan gives, for every kind of consent that can name a category."""
    hide = {
        c: consent("deny", GranteeType.EVERYONE, categories=frozenset({c}))
        for c in (Category.MENTAL_HEALTH, Category.HIV)
    }
    grant_b_no_hiv = consent(
        "permit", GranteeType.ORGANISATION, "mis:clinic-b", excluded=frozenset({Category.HIV})
    )
    grant_b_mh_only = consent(
        "permit",
        GranteeType.ORGANISATION,
        "mis:clinic-b",
        categories=frozenset({Category.MENTAL_HEALTH}),
    )
    cases = [
        (DR, [], frozenset[Category]()),
        (DR, [hide[Category.MENTAL_HEALTH]], frozenset({Category.MENTAL_HEALTH})),
        (DR, [hide[Category.HIV]], frozenset({Category.HIV})),
        (DR, list(hide.values()), frozenset(hide)),
        (DR_B, [consent("deny", GranteeType.EVERYONE), grant_b_no_hiv], {Category.HIV}),
        (DR_B, [consent("deny", GranteeType.EVERYONE), grant_b_mh_only], {Category.MENTAL_HEALTH}),
    ]
    facts = [
        (["Condition"], {"text": "Major depressive disorder"}, []),
        (["Document"], {"text": "Started on TENOFOVIR/emtricitabine; HIV viral load pending"}, []),
        (["Document"], {"text": "Anxiety worse since the HIV diagnosis"}, []),
        (["Condition"], {}, [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "B20"}]),
        (["Observation"], {"category": "vital-signs", "display": "Heart rate"}, []),
        (["Document"], {"text": "Aidsworth Street clinic, no concerns"}, []),
    ]
    for who, consents, expected in cases:
        decision = decide(who, X, consents, purpose=Purpose.TREATMENT, now=NOW)
        assert decision.sensitive == expected, consents
        for labels, fact, codes in facts:
            scoped = fact_categories(labels, fact, codes, decision.sensitive)
            assert decision.allows(scoped) == decision.allows(fact_categories(labels, fact, codes))
    # the lower-cased scan still finds upper-case text, and "aids" only as a word
    assert Category.HIV in fact_categories(["Document"], {"text": "TENOFOVIR"})
    assert Category.HIV not in fact_categories(["Document"], {"text": "Aidsworth Street"})
    assert fact_categories(["Document"], {"text": "HIV"}, [], frozenset()) == {Category.DOCUMENTS}


def test_scopes() -> None:
    assert parse_scope("patient/Observation.read").category is Category.OBSERVATIONS
    assert parse_scope("patient/Observation.rs?category=vital-signs").category is Category.VITALS
    assert (
        parse_scope(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/"
            "observation-category|laboratory"
        ).category
        is Category.LABORATORY
    )
    assert scope_categories(["patient/*.read"]) == {Category.ALL}
    for bad, words in (
        ("user/Observation.read", "not of the form"),
        ("patient/Observation.write", "not of the form"),
        ("patient/Observation.cruds", "write"),
        ("patient/Spaceship.read", "unknown resource"),
        ("patient/Observation.rs?category=secret", "unknown data category"),
    ):
        with pytest.raises(ConsentError, match=words):
            parse_scope(bad)
