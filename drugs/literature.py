"""Text-mined interaction statements as graph rows, kept apart from curated knowledge.

A statement (``nlp.ddi.InteractionStatement``) becomes one ``InteractionStatement`` node keyed
by its source and drug pair, so mining the same text again changes nothing. ``pairKey`` (the
two drugs' dictionary names, sorted) is what a medication review looks statements up by; a
mention the dictionary does not know (a class such as "beta-blockers") keeps its own words."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from drugs.names import fold

if TYPE_CHECKING:
    from nlp.ddi import DrugMention, InteractionStatement

METHOD = "medshadow nlp.ddi rules"


def _name(m: DrugMention) -> str:
    return m.canonical or fold(m.text)


def statement_row(s: InteractionStatement, origin: str) -> dict[str, Any]:
    a, b = sorted((_name(s.drug_a), _name(s.drug_b)))
    key = f"{s.source}|{a}|{b}"
    return {
        "uid": "lit:" + hashlib.blake2b(key.encode(), digest_size=10).hexdigest(),
        "pairKey": f"{a}|{b}",
        "drugA": a,
        "drugB": b,
        "mentionA": s.drug_a.text,
        "mentionB": s.drug_b.text,
        "type": s.type,
        "sentence": s.sentence,
        "source": s.source,
        "origin": origin,
        "cue": s.cue,
        "confidence": round(float(s.confidence), 3),
        "method": METHOD,
        "curated": False,
    }
