"""Drug names to ingredients, through the packaged drug dictionary.

The dictionary of ``drug-named-entity-recognition`` (MIT; DrugBank, MeSH and MedlinePlus names,
brand names, some French/Spanish/German synonyms) is the ingredient vocabulary: an ingredient is
one of its canonical names ("warfarin"). :class:`DrugDictionary` finds the ingredients a product
name, a patient's own wording or a French ANSM substance name stands for:

* product names are read the way RxNorm writes them ("Acetaminophen 325 MG / oxyCODONE
  Hydrochloride 5 MG Oral Tablet", "... [Tylenol]", "Trinessa 28 Day Pack"): each ``/`` part is
  matched on its longest dictionary name, so salts fall away ("Oxycodone Hydrochloride" ->
  oxycodone) and brands resolve to their ingredients;
* French substance names are tried as written, then through the regular French-to-English INN
  endings (warfarine -> warfarin, acide valproïque -> valproic acid, ... de sodium -> sodium ...).
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import importlib.util
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from terminology.sources import drug_ner_data

_PACKAGE = "drug_named_entity_recognition"

#: Words of an RxNorm product name that are never part of an ingredient's name.
_FORM_TEXT = (
    "oral tablet tablets capsule capsules chewable solution suspension injectable injection "
    "extended release delayed disintegrating topical cream ointment gel lotion patch "
    "transdermal system inhalation inhaler metered dose dry powder actuat nasal spray "
    "ophthalmic otic vaginal rectal suppository prefilled syringe auto-injector pen pack day "
    "days hr mg ml mcg ug g meq unt per abuse-deterrent sublingual buccal film granules for "
    "reconstitution kit cartridge drops elixir syrup liquid foam shampoo implant "
    "intrauterine device effervescent"
)
_FORM_WORDS = frozenset(_FORM_TEXT.split())
_SALT_TEXT = (
    "hydrochloride hcl hydrobromide carbonate sulfate sulphate potassium sodium calcium "
    "magnesium succinate tartrate bitartrate maleate mesylate besylate citrate phosphate "
    "acetate fumarate hyclate monohydrate dihydrate trihydrate medoxomil dipropionate"
)
_SALT_WORDS = frozenset(_SALT_TEXT.split())
_NUMBER = re.compile(r"^[\d.,/+%-]+$")
_BRACKET = re.compile(r"\[([^\]]+)\]")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9'+-]*")


def fold(text: str) -> str:
    """Lower case without accents, apostrophes unified, hyphen-space repaired, spaces single."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = text.lower().replace("’", "'").replace("- ", "-")
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class Ingredient:
    """One ingredient found in a text: the dictionary's canonical name and the words matched."""

    name: str
    matched: str
    drugbank_id: str | None


@dataclass(frozen=True, slots=True)
class DictionaryEntry:
    name: str  # canonical, lower case
    display: str
    drugbank_id: str | None


class DrugDictionary:
    """Name variants (folded) -> canonical ingredients, from the installed package's data."""

    def __init__(self, variants: dict[str, tuple[str, ...]], entries: dict[str, DictionaryEntry]):
        self._variants = variants
        self.entries = entries
        self.max_words = max((v.count(" ") + 1 for v in variants), default=1)

    @classmethod
    def from_package(
        cls,
        extra: Callable[[dict[str, DictionaryEntry]], Iterable[tuple[str, str]]] | None = None,
    ) -> DrugDictionary:
        """The dictionary of the installed package; ``extra(entries)`` adds (name, canonical)
        pairs."""
        data = drug_ner_data()
        entries = {
            canon: DictionaryEntry(canon, str(d.get("name") or canon), d.get("drugbank_id"))
            for canon, d in data["drug_canonical_to_data"].items()
        }
        found: dict[str, set[str]] = {}
        for variant, targets in data["drug_variant_to_canonical"].items():
            found.setdefault(fold(variant), set()).update(t for t in targets if t in entries)
        for canon, d in data["drug_canonical_to_data"].items():
            for name in (canon, d.get("name") or canon, *(d.get("synonyms") or ())):
                found.setdefault(fold(str(name)), set()).add(canon)
        for name, canon in extra(entries) if extra is not None else ():
            if canon in entries:
                found.setdefault(fold(name), set()).add(canon)
        variants = {k: tuple(sorted(v)) for k, v in found.items() if v}
        return cls(variants, entries)

    @staticmethod
    def version() -> str:
        return importlib.metadata.version("drug-named-entity-recognition")

    def lookup(self, name: str) -> tuple[str, ...]:
        """Canonical ingredients of one exact name (folded), or ()."""
        return self._variants.get(fold(name), ())

    def entry(self, canonical: str) -> DictionaryEntry | None:
        return self.entries.get(canonical)

    def display_names(self, ingredients: Iterable[str]) -> list[str]:
        """The dictionary's display names ("Warfarin") of canonical ingredients."""
        return [e.display if (e := self.entries.get(i)) else i for i in ingredients]

    def ingredients(self, text: str) -> list[Ingredient]:
        """The ingredients a product name or free text names, in order, each once."""
        folded = fold(text)
        parts = [folded]
        if (brand := _BRACKET.search(folded)) is not None:
            # "[Tylenol]": the generic part before it is better evidence than the brand
            parts = [_BRACKET.sub(" ", folded), brand.group(1)]
        out: dict[str, Ingredient] = {}
        for part in parts:
            for piece in re.split(r"\s/\s|;|,\s(?=[a-z])| and | \+ ", part):
                for hit in self._scan(piece):
                    out.setdefault(hit.name, hit)
            if out:
                break
        return list(out.values())

    def moiety(self, canonical: str) -> str:
        """The active moiety of a salt the dictionary lists on its own ("lithium carbonate" ->
        "lithium", "penicillin v potassium" -> "penicillin v"), when the dictionary knows it;
        interactions and reconciliation are about the moiety, not the salt."""
        words = canonical.split()
        while len(words) > 1 and words[-1] in _SALT_WORDS:
            words = words[:-1]
            base = " ".join(words)
            if base in self.entries:
                return base
        return canonical

    def _scan(self, text: str) -> list[Ingredient]:
        words = list(_TOKEN.findall(text))
        hits: list[Ingredient] = []
        i = 0
        while i < len(words):
            if _NUMBER.match(words[i]) or words[i] in _FORM_WORDS:
                i += 1
                continue
            for n in range(min(self.max_words, len(words) - i), 0, -1):
                found = self._variants.get(" ".join(words[i : i + n]))
                if found:
                    for c in found:
                        c = self.moiety(c)
                        matched = " ".join(words[i : i + n])
                        hits.append(Ingredient(c, matched, self.entries[c].drugbank_id))
                    i += n
                    break
            else:
                i += 1
        return hits

    def from_french(self, name: str) -> tuple[str, ...]:
        """Canonical ingredients of a French substance name (ANSM), or ()."""
        for candidate in french_to_english(name):
            if found := self.lookup(candidate):
                return found
        return ()


#: Thesaurus entries that are not INNs and that no ending rule turns into English.
_GLOSSARY_FR = {
    "millepertuis": "st. john's wort",
    "pamplemousse (jus et fruit)": "grapefruit",
    "alcool (boisson ou excipient)": "ethanol",
    "reglisse": "licorice",
    "fer": "iron",
    "bleu de methylene": "methylene blue",
    "charbon active": "activated charcoal",
}

_SALTS_FR = {
    "sodium": "sodium",
    "potassium": "potassium",
    "calcium": "calcium",
    "magnesium": "magnesium",
    "lithium": "lithium",
    "zinc": "zinc",
    "fer": "iron",
    "aluminium": "aluminum",
}


def french_to_english(name: str) -> list[str]:
    """Candidate English INNs for a French substance name, most literal first.

    French INNs differ from English ones by regular endings (``-ine``/``-in``, ``-one`` stays,
    ``acide X-ique`` -> ``X-ic acid``, ``X de sodium`` -> ``sodium X``); these rules cover most of
    the thesaurus, and the rest keep their French name (reported by the load)."""
    folded = fold(name)
    if folded in _GLOSSARY_FR:
        return [_GLOSSARY_FR[folded], folded]
    inverted = re.fullmatch(r"(.+?)\s*\(\s*(.+?)\)", folded)
    if inverted is not None and (inverted.group(2).endswith(" de") or " " not in inverted.group(2)):
        # the index's inverted entries: "sodium (oxybate de)" is "oxybate de sodium"
        return french_to_english(f"{inverted.group(2)} {inverted.group(1)}")
    base = re.sub(r"\s*\(.*?\)\s*", " ", folded).strip()  # "(c 7e3b fab)"
    out = [fold(name), base]
    words = base.split()

    def endings(word: str) -> list[str]:
        forms = [word]
        for fr, en in (
            ("ine", "in"),
            ("ide", "id"),
            ("ate", "at"),
            ("ol", "ol"),
            ("yle", "yl"),
            ("ique", "ic"),
            ("ose", "ose"),
            ("e", ""),
            ("ene", "ene"),
        ):
            if word.endswith(fr):
                forms.append(word[: len(word) - len(fr)] + en)
        forms += [f.replace("ph", "f") for f in forms if "ph" in f]
        forms += [f.replace("y", "i") for f in forms if "y" in f]
        forms += [f.replace("k", "c") for f in forms if "k" in f]
        return forms

    if words and words[0] == "acide" and len(words) >= 2:
        rest = " ".join(words[1:])
        for form in endings(words[-1]):
            stem = " ".join([*words[1:-1], form])
            out += [f"{stem} acid", f"{stem}ic acid"]
        out.append(f"{rest} acid")
    if len(words) >= 3 and words[-2] in {"de", "d'"} and words[-1] in _SALTS_FR:
        salt = _SALTS_FR[words[-1]]
        stem = " ".join(words[:-2])
        for form in endings(stem):
            out += [f"{form} {salt}", f"{salt} {form}", form]
    if len(words) == 3 and words[1] in {"de", "d'"}:  # "fumarate de dimethyle"
        out += [f"{b} {a}" for a in endings(words[0]) for b in endings(words[2])]
    if len(words) == 1:
        out += endings(words[0])
    elif words and words[0] != "acide":
        out += [" ".join([*words[:-1], f]) for f in endings(words[-1])]
        out += [" ".join(endings(w)[-1] for w in words)]
        # "dalteparine sodique", "alteplase recombinante": the salt or origin adjective goes
        out += endings(" ".join(words[:-1]))
    seen: dict[str, None] = {}
    for c in out:
        seen.setdefault(c.strip(), None)
    return [c for c in seen if c]


_CODE_LIKE = re.compile(r"^[A-Z0-9-]+$|^[\d\W]+$")
VOCABULARY = Path(__file__).with_name("data") / "drugbank_vocabulary.csv.gz"


def drugbank_names(
    entries: dict[str, DictionaryEntry], path: Path = VOCABULARY
) -> Iterator[tuple[str, str]]:
    """(name, canonical) pairs from the DrugBank open vocabulary (CC0): common names and
    synonyms of the dictionary's ingredients, joined on the DrugBank id."""
    by_id = {e.drugbank_id: c for c, e in entries.items() if e.drugbank_id}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            canonical = by_id.get(row.get("DrugBank ID") or "")
            if canonical is None:
                continue
            for name in (row.get("Common name") or "", *(row.get("Synonyms") or "").split(" | ")):
                # short synonyms ("ASA", "PCM") and codes would match ordinary words and numbers
                if len(fold(name)) >= 5 and not _CODE_LIKE.match(name.strip()):
                    yield name.strip(), canonical


@cache
def default_dictionary() -> DrugDictionary:
    """The package's dictionary plus the DrugBank open vocabulary's names, built once per
    process (about 1.5 seconds)."""
    return DrugDictionary.from_package(drugbank_names)
