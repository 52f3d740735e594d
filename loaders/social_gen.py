"""Synthetic community posts by a deterministic subset of the sample ecosystem's persons.

Each chosen person joins the community of their main real condition (a diabetes forum, a
heart-health forum, a migraine group, a mental-health messenger channel, a general chat) under a
handle and a profile that shows a little of who they are. They start threads whose text fits
their own records (their glucose, their blood pressure, the drugs they were prescribed), and
members of the same community answer each other. ``ground_truth_social.json`` maps every
author's Patient record uid to the person id; the loader never reads it.

Deterministic per seed; dates derive from the person's records, never the wall clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from loaders import person_view as pv
from loaders.patient_record import record_uid, slug
from loaders.social import FORMAT, community_domain
from loaders.synthea import write_atomic

GROUND_TRUTH_SOCIAL = "ground_truth_social.json"


@dataclass(frozen=True, slots=True)
class Community:
    name: str
    kind: str  # post (forum) or message (messenger channel)
    words: tuple[str, ...]  # condition words that bring a person here
    drugs: tuple[str, ...]  # drug name words the community talks about ({med})
    openers: tuple[str, ...]
    replies: tuple[str, ...]


COMMUNITIES: tuple[Community, ...] = (
    Community(
        "Diabetes Forum",
        "post",
        ("diabetes", "prediabetes", "metabolic syndrome"),
        ("metformin", "insulin", "glipizide", "liraglutide", "sitagliptin", "canagliflozin"),
        (
            "My fasting glucose was {glucose} mg/dL this morning. Is that too high? "
            "My doctor says I have {condition}.",
            "Anyone else on {med}? I get stomach cramps and diarrhea since I started it. "
            "Does it get better?",
            "Just diagnosed with {condition}. Glucose readings all over the place, "
            "between {glucose_low} and {glucose}. What do you eat for breakfast?",
            "A1c came back at {a1c}%. Trying to walk every day. Tips for snacks?",
        ),
        (
            "Mine were like that at first, it settled after a few weeks. Take it with food.",
            "Ask your doctor about the extended release version, it was easier on my stomach.",
            "Oatmeal and eggs work for me, glucose stays under 140 after breakfast.",
            "Keep a log of your readings and bring it to the appointment, it helped me a lot.",
        ),
    ),
    Community(
        "Heart Health Forum",
        "post",
        ("hypertension", "hyperlipidemia", "hypertriglyceridemia", "heart"),
        ("statin", "lisinopril", "amlodipine", "hydrochlorothiazide", "metoprolol", "aspirin"),
        (
            "My blood pressure at home is around {systolic}/{diastolic}. "
            "At the clinic it is always higher. Which one counts?",
            "Started {med} for my {condition}. Anyone had muscle aches on it?",
            "Cut salt for a month and my BP went from {systolic} to {systolic_low}. Worth it!",
        ),
        (
            "White coat effect is real, bring your home readings to the visit.",
            "I had aches on a statin too, my doctor switched the dose and it went away.",
            "Measure at the same time every day, sitting, after five minutes of rest.",
        ),
    ),
    Community(
        "Migraine Support",
        "post",
        ("migraine",),
        ("sumatriptan", "topiramate", "propranolol", "ibuprofen", "naproxen"),
        (
            "Third migraine this week, {med} barely helps. How do you get through work?",
            "Does anyone track triggers? Mine seem to be sleep and skipping meals.",
            "Neurologist wants me on a preventive for my {condition}. Scared of side effects.",
        ),
        (
            "Dark room and cold pack, and I take my tablet at the very first sign.",
            "Preventive changed my life, went from 12 days a month to 3.",
            "Keeping a headache diary helped my neurologist a lot.",
        ),
    ),
    Community(
        "Mind Matters Chat",
        "message",
        ("anxiety", "stress", "depress", "panic"),
        ("sertraline", "escitalopram", "fluoxetine", "citalopram", "bupropion"),
        (
            "rough day again, stress at work and can't sleep",
            "anyone tried breathing exercises for panic? does it help",
            "started {med} two weeks ago, feel a bit numb, normal?",
        ),
        (
            "sending hugs, the 4-7-8 breathing helps me at night",
            "first weeks on it were weird for me too, talk to your doctor",
            "you're not alone, walks help me clear my head",
        ),
    ),
    Community(
        "Everyday Health Chat",
        "message",
        (),
        (),
        (
            "anyone else had {condition} recently? how long did it last",
            "doctor said it's {condition}, resting and drinking tea",
            "weighed {weight} kg today, trying to get back in shape",
        ),
        (
            "took me about a week, get well soon",
            "honey and lemon helped me",
            "good luck, small steps!",
        ),
    ),
)

_HANDLE_WORDS = ("sunny", "blue", "happy", "quiet", "brave", "lucky", "green", "calm")
_HANDLE_NOUNS = ("walker", "gardener", "reader", "baker", "runner", "owl", "fox", "sailor")


@dataclass(frozen=True, slots=True)
class SocialGenReport:
    out_dir: Path
    authors: int
    posts: int
    communities: int


@dataclass(slots=True)
class _Member:
    person: pv.PersonView
    handle: str
    profile: dict[str, Any]
    rng: random.Random


def generate_social(
    split_dir: Path,
    out_dir: Path,
    *,
    seed: int = 2026,
    fraction: float = 0.5,
    community_prefix: str = "",
) -> SocialGenReport:
    """Write ``<community>.ndjson`` per community with members, and the ground truth.

    ``community_prefix`` is put before every community name (tests keep their domains apart).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    communities = [replace(c, name=community_prefix + c.name) for c in COMMUNITIES]
    members: dict[str, list[_Member]] = {c.name: [] for c in communities}
    for person in pv.read_persons(split_dir, lambda pid: pv.chosen(seed, "social", pid, fraction)):
        if not person.alive:
            continue
        community = _community_of(person, communities)
        rng = pv.rng_for(seed, "social", person.pid)
        handle, profile = _profile(person, rng, seed)
        members[community.name].append(_Member(person, handle, profile, rng))
    truth: dict[str, str] = {}
    posts = 0
    written = 0
    for community in communities:
        group = members[community.name]
        if not group:
            continue
        lines = _threads(community, group)
        path = out_dir / f"{slug(community.name)}.ndjson"
        write_atomic(path, b"".join(orjson.dumps(line) + b"\n" for line in lines))
        for m in group:
            truth[record_uid(community_domain(community.name), m.handle)] = m.person.pid
        posts += len(lines)
        written += 1
    write_atomic(
        out_dir / GROUND_TRUTH_SOCIAL,
        orjson.dumps(truth, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS),
    )
    return SocialGenReport(out_dir, len(truth), posts, written)


def _community_of(person: pv.PersonView, communities: list[Community]) -> Community:
    for community in communities:
        if community.words and person.has_condition(*community.words):
            return community
    return communities[-1]


def _profile(person: pv.PersonView, rng: random.Random, seed: int) -> tuple[str, dict[str, Any]]:
    given, family = pv.official_name(person.patient)
    first = given[0] if given else "Pat"
    style = rng.random()
    if style < 0.4:
        handle = f"{first.lower()}{rng.randint(10, 99)}"
        display = f"{first} {family[0]}." if family else first
    elif style < 0.7:
        handle = f"{first[0].lower()}_{(family or 'x').lower()}"
        display = f"{first} {family}" if family else first
    else:
        handle = f"{rng.choice(_HANDLE_WORDS)}{rng.choice(_HANDLE_NOUNS)}{rng.randint(1, 999)}"
        display = handle
    handle = "".join(ch for ch in handle if ch.isalnum() or ch == "_")
    # Handles are unique in a community: a clash with another member gets a stable suffix.
    handle = f"{handle}_{pv.stable_id(seed, 'social', person.pid, 4)}"
    profile: dict[str, Any] = {"handle": handle, "displayName": display}
    if rng.random() < 0.3:
        profile["birthDate"] = person.patient.get("birthDate")
    if rng.random() < 0.5:
        profile["gender"] = person.patient.get("gender")
    if rng.random() < 0.5:
        home: Any = next(iter(person.patient.get("address") or []), {})
        if isinstance(home, dict) and home.get("city"):
            profile["city"] = home["city"]
    if rng.random() < 0.2:
        profile["email"] = pv.telecom(person.patient, "email")
    return handle, {k: v for k, v in profile.items() if v is not None}


def _facts(person: pv.PersonView, community: Community) -> dict[str, Any]:
    """Values the templates may use, all from the person's own records.

    ``med`` is set only when the person was prescribed a drug the community talks about, so
    a migraine drug never turns up in the diabetes forum; openers using it are skipped otherwise.
    """
    # Disorders only: Synthea also records findings such as "Medication review due".
    conditions = [
        c.display.split(" (")[0]
        for c in person.conditions
        if c.active and "(disorder)" in c.display
    ]
    relevant = [
        c.display.split(" (")[0]
        for c in person.conditions
        if c.active and any(w in c.display.lower() for w in community.words)
    ]
    names = [m.display.split(" ")[0].lower() for m in (person.current_meds() or person.meds)]
    meds = [n for n in names if not community.drugs or any(d in n for d in community.drugs)]
    glucose = [v for _, v in person.vitals.get(pv.GLUCOSE, [])]
    systolic = person.latest(pv.SYSTOLIC) or 135.0
    return {
        "condition": (relevant or conditions or ["a cold"])[0].lower(),
        "med": meds[0] if meds else None,
        "glucose": int(max(glucose)) if glucose else 150,
        "glucose_low": int(min(glucose)) if glucose else 95,
        "a1c": round(person.latest(pv.HBA1C) or 6.4, 1),
        "systolic": int(systolic),
        "systolic_low": int(systolic - 8),
        "diastolic": int(person.latest(pv.DIASTOLIC) or 85.0),
        "weight": round(person.latest(pv.WEIGHT) or 75.0, 1),
    }


def _threads(community: Community, group: list[_Member]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    key = slug(community.name)
    for i, member in enumerate(group):
        facts = _facts(member.person, community)
        start = (member.person.last_seen or datetime(2025, 1, 1, tzinfo=UTC)) - timedelta(
            days=member.rng.randint(1, 60), minutes=member.rng.randint(0, 600)
        )
        openers = [o for o in community.openers if facts["med"] or "{med}" not in o]
        for t, template in enumerate(member.rng.sample(openers, member.rng.randint(1, 2))):
            thread = f"{key}-t{i + 1}-{t + 1}"
            opener = template.format(**facts)
            when = start + timedelta(days=t * 3)
            lines.append(_line(community, member, f"{thread}-1", thread, None, opener, when))
            others = [m for m in group if m is not member]
            repliers = member.rng.sample(others, min(len(others), member.rng.randint(1, 2)))
            if not repliers:  # alone in the community: the author follows up
                repliers = [member]
            parent = f"{thread}-1"
            for n, replier in enumerate(repliers, start=2):
                if replier is member:
                    text = "Update: talked to my doctor about it, will see how it goes."
                else:
                    text = member.rng.choice(community.replies)
                when += timedelta(hours=member.rng.randint(1, 30))
                post_id = f"{thread}-{n}"
                lines.append(_line(community, replier, post_id, thread, parent, text, when))
                parent = post_id
    lines.sort(key=lambda line: (line["time"], line["id"]))
    return lines


def _line(
    community: Community,
    member: _Member,
    post_id: str,
    thread: str,
    reply_to: str | None,
    text: str,
    when: datetime,
) -> dict[str, Any]:
    line = {
        "format": FORMAT,
        "id": post_id,
        "community": community.name,
        "kind": community.kind,
        "author": member.profile,
        "time": when.replace(microsecond=0).isoformat(),
        "text": text,
        "thread": thread,
    }
    if reply_to is not None:
        line["inReplyTo"] = reply_to
    return line
