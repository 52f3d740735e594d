"""List checks against the thesaurus in the real graph: interactions (substance and class
level), duplicate therapy, polypharmacy, patient context and ranking."""

from __future__ import annotations

from typing import Any

import neo4j
import pytest

from drugs import checks as ck
from drugs.knowledge import ANSM_SYSTEM
from drugs.model import Severity
from drugs.service import DrugSafety
from graph.drugs import interactions_among


@pytest.fixture(scope="module")
def service(driver: neo4j.Driver, drug_knowledge: Any) -> DrugSafety:
    return DrugSafety(driver)


def test_load_is_idempotent_and_stores_every_interaction(
    driver: neo4j.Driver, service: DrugSafety, drug_knowledge: Any
) -> None:
    again = service.load()
    assert again.nodes_changed == 0
    assert again.removed == 0
    stored = driver.execute_query(
        "MATCH (i:DrugInteraction {system: $s}) RETURN i.severity AS s, count(*) AS n",
        s=ANSM_SYSTEM,
    )[0]
    assert sum(r["n"] for r in stored) == drug_knowledge.interactions
    assert {r["s"] for r in stored} == {s.value for s in Severity}
    # every interaction names exactly two concepts of the thesaurus
    bad = driver.execute_query(
        "MATCH (i:DrugInteraction) WHERE COUNT { (i)-[:INTERACTANT]->(:Concept) } <> 2 "
        "RETURN count(i) AS n"
    )[0][0]["n"]
    assert bad == 0


def test_findings_are_thesaurus_entries_between_the_drugs(
    driver: neo4j.Driver, service: DrugSafety
) -> None:
    review = service.check_names(
        ["warfarin", "aspirin", "ibuprofen", "simvastatin", "clarithromycin"]
    )
    interactions = [f for f in review.findings if f.kind == "interaction"]
    assert interactions
    by_key = {i.key: i for i in review.items}
    for f in interactions:
        # independently in Cypher: each side of the entry is the drug's substance or one of its
        # classes, and the severity is the stored one (no patient context here)
        rows = driver.execute_query(
            "MATCH (i:DrugInteraction {uid: $uid})-[r:INTERACTANT]->(c:Concept) "
            "OPTIONAL MATCH (s:Concept {system: $sys})-[:IS_A*0..1]->(c) "
            "WHERE any(x IN $ings WHERE s.properties CONTAINS ('\"' + x + '\"') "
            "  OR s.properties CONTAINS ('|' + x + '\"') OR s.properties CONTAINS ('\"' + x + '|'))"
            "RETURN i.severity AS severity, size(i.sourceLevels) AS levels, r.side AS side, "
            "collect(DISTINCT s.code) AS subs",
            uid=f.interaction,
            sys=ANSM_SYSTEM,
            ings=[ing for k in f.items for ing in by_key[k].ingredients],
        )[0]
        assert len(rows) == 2
        assert all(r["subs"] for r in rows), (f.title, rows)
        # no patient context here; a multi-level entry may apply below its top level
        assert f.severity == f.base_severity
        stored = Severity(rows[0]["severity"])
        if rows[0]["levels"] == 1:
            assert f.base_severity == stored
        else:
            assert f.base_severity.rank <= stored.rank


def test_a_class_rule_reaches_every_member(driver: neo4j.Driver, service: DrugSafety) -> None:
    # a class-vs-class entry: every (member of A, member of B) pair must get it
    row = driver.execute_query(
        "MATCH (a:Concept)<-[:INTERACTANT {side:'a'}]-(i:DrugInteraction)"
        "-[:INTERACTANT {side:'b'}]->(b:Concept) "
        "WHERE COUNT { (a)<-[:IS_A]-() } >= 3 AND COUNT { (b)<-[:IS_A]-() } >= 3 "
        "RETURN i.uid AS uid, a.code AS a, b.code AS b ORDER BY uid LIMIT 1"
    )[0][0]
    index = service.index()
    members_a = [e for e in index.entities.values() if row["a"] in e.classes and e.ingredients]
    members_b = [e for e in index.entities.values() if row["b"] in e.classes and e.ingredients]
    assert len(members_a) >= 2
    assert len(members_b) >= 2
    for x in members_a[:3]:
        for y in members_b[:3]:
            if set(x.ingredients) & set(y.ingredients):
                continue
            items, _ = service.items_for([x.ingredients[0], y.ingredients[0]])
            rows = interactions_among(driver, ANSM_SYSTEM, ck.anchors_of(items, index))
            found = {m.uid for m in ck.pair_interactions(items, index, rows)}
            assert row["uid"] in found, (x.code, y.code)


def test_one_finding_per_pair_with_weaker_entries_folded(service: DrugSafety) -> None:
    review = service.check_names(["warfarin", "aspirin"])
    pairs = [f for f in review.findings if f.kind == "interaction"]
    assert len(pairs) == 1
    lead = pairs[0]
    # warfarin + aspirin: a substance-level contraindication and a class-level entry
    assert lead.severity == Severity.CONTRAINDICATED
    assert lead.priority == "interrupt"
    assert lead.also


def test_ranking_puts_the_dangerous_few_first(service: DrugSafety) -> None:
    review = service.check_names(
        [
            "warfarin",
            "aspirin",
            "ibuprofen",
            "simvastatin",
            "clarithromycin",
            "sertraline",
            "tramadol",
            "omeprazole",
            "lisinopril",
            "spironolactone",
        ]
    )
    priorities = [f.priority for f in review.findings]
    assert priorities == sorted(priorities, key=ck.PRIORITY_ORDER.index)
    interrupt = [f for f in review.findings if f.priority == "interrupt"]
    assert interrupt
    assert all(f.severity.rank >= Severity.MAJOR.rank for f in interrupt)
    assert len(interrupt) < len(review.findings) / 2  # most findings are folded away
    scores = [f.score for f in review.findings]
    assert scores == sorted(scores, reverse=True)


def test_names_are_merged_and_unknown_ones_reported(service: DrugSafety) -> None:
    review = service.check_names(["Aspirin 81 MG Oral Tablet", "acide acétylsalicylique", "zzq"])
    assert [i.ingredients for i in review.items] == [("aspirin",)]
    assert len(review.items[0].sources) == 2
    assert review.unresolved == ["zzq"]
    # RxNorm ingredient codes resolve through the thesaurus's own mapping (1191 = aspirin)
    assert service.resolve("rxnorm:1191").ingredients == ("aspirin",)


def test_duplicate_therapy_by_class(service: DrugSafety) -> None:
    review = service.check_names(["sertraline", "fluoxetine"])
    dup = [f for f in review.findings if f.kind == "duplicate"]
    assert len(dup) == 1
    assert "inhibiteurs sélectifs de la recapture de la sérotonine" in dup[0].via
    # an interaction-mechanism class shared is not duplication (both are hyponatraemic)
    assert not any("hyponatr" in v for f in dup for v in f.via)


@pytest.mark.parametrize(("n", "label"), [(4, None), (5, "polypharmacy"), (10, "excessive")])
def test_polypharmacy_thresholds(service: DrugSafety, n: int, label: str | None) -> None:
    # Masnoon et al., BMC Geriatr 2017: >= 5 polypharmacy, >= 10 excessive
    names = [
        "amoxicillin",
        "omeprazole",
        "loratadine",
        "levothyroxine",
        "metformin",
        "acetaminophen",
        "vitamin d",
        "folic acid",
        "cetirizine",
        "famotidine",
    ][:n]
    review = service.check_names(names)
    assert len(review.items) == n
    poly = [f for f in review.findings if f.kind == "polypharmacy"]
    if label is None:
        assert poly == []
    else:
        assert len(poly) == 1
        assert poly[0].title.startswith(label)


def test_context_raises_and_flags_with_the_rule_named(service: DrugSafety) -> None:
    items, _ = service.items_for(["metformin", "ibuprofen", "lisinopril"])
    plain = service.check(items)
    # KDIGO 2012 CKD 4.4; FDA Drug Safety Communication 2016 (metformin, eGFR < 30)
    frail = service.check(items, ck.PatientContext(age=82, egfr=25))
    base = next(f for f in plain if f.kind == "interaction" and "Lisinopril" in f.title)
    raised = next(f for f in frail if f.interaction == base.interaction)
    assert raised.severity.rank > base.severity.rank
    assert raised.base_severity == base.severity
    assert any(r.startswith("hyperkalaemia-reduced-egfr") for r in raised.rules)
    context = {f.rules[0]: f for f in frail if f.kind == "context"}
    assert context["metformin-egfr-below-30"].severity == Severity.CONTRAINDICATED
    assert context["nsaid-egfr-below-30"].severity == Severity.MAJOR
    assert "25" in context["metformin-egfr-below-30"].title
    assert not [f for f in plain if f.kind == "context"]


def test_pregnancy_contraindications(service: DrugSafety) -> None:
    # EMA/ANSM SmPC 4.3/4.6: statins and ACE inhibitors are contraindicated in pregnancy
    items, _ = service.items_for(["simvastatin", "lisinopril", "amoxicillin"])
    findings = service.check(items, ck.PatientContext(age=30, pregnant=True))
    flagged = {f.items[0] for f in findings if f.kind == "context"}
    assert flagged == {"simvastatin", "lisinopril"}
    assert all(f.severity == Severity.CONTRAINDICATED for f in findings if f.kind == "context")


def test_medication_concepts_link_to_their_substances(
    driver: neo4j.Driver, service: DrugSafety
) -> None:
    rows = driver.execute_query(
        "MATCH (k:Concept)-[:HAS_INGREDIENT]->(s:Concept) "
        "RETURN k.display AS display, collect(s.code) AS codes"
    )[0]
    assert len(rows) > 10
    index = service.index()
    for row in rows:
        ingredients = [i.name for i in service.dictionary.ingredients(row["display"])]
        expected = {code for ing in ingredients for code in index.substances(ing)}
        assert set(row["codes"]) == expected, row["display"]
    # the graph answers class questions itself: products reaching the NSAID class
    nsaid = driver.execute_query(
        "MATCH (k:Concept)-[:HAS_INGREDIENT]->(:Concept)-[:IS_A]->(c:Concept {code: $c}) "
        "RETURN collect(DISTINCT k.display) AS products",
        c="anti-inflammatoires non steroidiens",
    )[0][0]["products"]
    assert any("ibuprofen" in p.lower() or "naproxen" in p.lower() for p in nsaid)


def test_index_follows_a_reload(driver: neo4j.Driver, service: DrugSafety) -> None:
    before = service.index()
    assert service.index() is before  # cached between checks
    driver.execute_query(
        "MATCH (s:CodeSystem {system: $s}) SET s.knowledgeHash = 'edited'", s=ANSM_SYSTEM
    )
    service._checked = 0.0  # the version is re-read at most once a second
    edited = service.index()
    assert edited is not before
    assert edited.version is not None
    assert edited.version.endswith(":edited")
    service.load()  # restores the stored hash of this edition
    service._checked = 0.0
    assert service.index().version == before.version


def test_a_level_restricted_to_other_drugs_does_not_apply(service: DrugSafety) -> None:
    # ANSM 2020, "médicaments sédatifs + autres médicaments sédatifs": CONTRE-INDICATION only
    # with sodium oxybate, "à prendre en compte" for every other pair of sedatives
    opioids = service.check_names(["oxycodone", "fentanyl"])
    pair = [f for f in opioids.findings if f.kind == "interaction"]
    assert pair
    assert all(f.base_severity != Severity.CONTRAINDICATED for f in pair)
    with_oxybate = service.check_names(["sodium oxybate", "morphine"])
    lead = next(f for f in with_oxybate.findings if f.kind == "interaction")
    assert lead.base_severity == Severity.CONTRAINDICATED


def test_one_ingredient_in_two_products(service: DrugSafety) -> None:
    review = service.check_names(
        ["Acetaminophen 325 MG / Oxycodone Hydrochloride 5 MG Oral Tablet", "paracetamol 500 mg"]
    )
    assert len(review.items) == 2
    dup = [f for f in review.findings if f.kind == "duplicate"]
    assert len(dup) == 1
    assert dup[0].via == ("acetaminophen",)
    assert dup[0].priority == "interrupt"
