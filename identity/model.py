"""Demographic records as the master patient index sees them, and how their fields normalise.

A :class:`DemographicRecord` is one clinic system's ("domain's") view of a person: the
fields a registration desk types in, with the typos, transliterations, placeholders and
stale values that come with them. The ``normalise_*`` helpers map each field to the form
the matcher compares (lower-case ASCII, no punctuation, canonical digits), and
:func:`normalise_record` derives every comparison and blocking key of one record.

Everything here is pure Python and deterministic, with no dependency beyond the stdlib.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Final

__all__ = [
    "DemographicRecord",
    "NormalisedRecord",
    "given_name_groups",
    "normalise_address_line",
    "normalise_city",
    "normalise_gender",
    "normalise_name",
    "normalise_national_id",
    "normalise_phone",
    "normalise_postal_code",
    "normalise_record",
    "normalise_text",
    "soundex",
    "transliteration_key",
]


@dataclass(frozen=True, slots=True)
class DemographicRecord:
    """One domain's demographic record of a person, as entered (not normalised).

    ``record_id`` identifies the record across all domains (for example
    ``"<domain>/<local id>"``): two records with the same ``record_id`` are the same record
    and are never paired. ``other_family`` holds further family names the domain knows for
    the person (maiden name, former or alias names, FHIR ``name.use`` = maiden/old).
    """

    record_id: str
    domain: str
    family: str | None
    given: str | None
    birth_date: date | None
    gender: str | None
    national_id: str | None
    postal_code: str | None
    city: str | None
    address_line: str | None
    phone: str | None
    other_family: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NormalisedRecord:
    """The comparison and blocking columns the matcher derives from one record."""

    record_id: str
    domain: str
    family: str | None
    family_names: tuple[str, ...]
    family_key: str | None
    family_soundex: str | None
    given: str | None
    given_groups: tuple[str, ...]
    given_key: str | None
    given_soundex: str | None
    birth_date: str | None
    birth_year: int | None
    gender: str | None
    national_id: str | None
    postal_code: str | None
    city: str | None
    address_line: str | None
    phone: str | None


# --------------------------------------------------------------------------- text

#: Letters that NFKD does not decompose into ASCII plus a combining mark.
_SPECIAL_LETTERS: Final[Mapping[str, str]] = {
    "ß": "ss",
    "æ": "ae",
    "œ": "oe",
    "ø": "o",
    "ł": "l",
    "đ": "d",
    "ð": "d",
    "þ": "th",
    "ı": "i",
    "ħ": "h",
}

#: Russian/Ukrainian/Belarusian Cyrillic to Latin (ICAO Doc 9303, as on passports).
_CYRILLIC: Final[Mapping[str, str]] = {
    "а": "a",
    "б": "b",
    "в": "v",
    "г": "g",
    "ґ": "g",
    "д": "d",
    "е": "e",
    "ё": "e",
    "є": "ie",
    "ж": "zh",
    "з": "z",
    "и": "i",
    "і": "i",
    "ї": "i",
    "й": "i",
    "к": "k",
    "л": "l",
    "м": "m",
    "н": "n",
    "о": "o",
    "п": "p",
    "р": "r",
    "с": "s",
    "т": "t",
    "у": "u",
    "ў": "u",
    "ф": "f",
    "х": "kh",
    "ц": "ts",
    "ч": "ch",
    "ш": "sh",
    "щ": "shch",
    "ъ": "ie",
    "ы": "y",
    "ь": "",
    "э": "e",
    "ю": "iu",
    "я": "ia",
}

_APOSTROPHES = re.compile(r"['\u2019\u2018\u02bc`´]")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_NON_ALPHA = re.compile(r"[^a-z]+")
_NON_DIGIT = re.compile(r"\D+")


def _ascii_fold(value: str) -> str:
    """Casefold, transliterate Cyrillic and strip diacritics: ``"Müller"`` -> ``"muller"``."""
    if value.isascii():
        return value.lower()
    folded = value.casefold()
    folded = "".join(_CYRILLIC.get(ch, _SPECIAL_LETTERS.get(ch, ch)) for ch in folded)
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalise_text(value: str | None) -> str | None:
    """Casefold, strip diacritics and punctuation, collapse spaces; keeps digits.

    Apostrophes vanish (``"O'Keefe"`` -> ``"okeefe"``), other punctuation separates words.
    Returns ``None`` for a missing or empty value.
    """
    if value is None:
        return None
    text = _APOSTROPHES.sub("", _ascii_fold(value))
    text = _NON_ALNUM.sub(" ", text).strip()
    return text or None


def normalise_name(value: str | None) -> str | None:
    """A person name as words of ASCII letters: ``"García-López206"`` -> ``"garcia lopez"``.

    Digits are dropped too: generated data (Synthea) and some exports suffix names with them.
    """
    if value is None:
        return None
    text = _APOSTROPHES.sub("", _ascii_fold(value))
    text = _NON_ALPHA.sub(" ", text).strip()
    return text or None


_FAMILY_PARTICLES: Final = frozenset(
    {"da", "das", "de", "del", "della", "der", "di", "do", "dos", "du", "la", "le", "van", "von"}
)


def _family_names(family: str | None, others: tuple[str, ...]) -> tuple[str, ...]:
    """Every family name of a record, and the parts of compound ones, for alias matching."""
    names: set[str] = set()
    for raw in (family, *others):
        name = normalise_name(raw)
        if name is None:
            continue
        names.add(name.replace(" ", ""))
        parts = [p for p in name.split() if p not in _FAMILY_PARTICLES and len(p) >= 3]
        if len(parts) > 1:
            names.update(parts)
    return tuple(sorted(names))


def transliteration_key(name: str | None) -> str | None:
    """A skeleton on which common spelling/transliteration variants of a name agree.

    ``"Müller"``/``"Mueller"``, ``"Yuri"``/``"Iurii"``/``"Jurij"``, ``"Philip"``/``"Filip"``,
    ``"Schmidt"``/``"Shmidt"`` each share one key. Not a phonetic code: it only undoes
    the usual ambiguities of writing a name in Latin letters.
    """
    text = normalise_name(name)
    if text is None:
        return None
    key = text.replace(" ", "")
    for old, new in (
        ("sch", "sh"),
        ("ph", "f"),
        ("ck", "k"),
        ("kh", "h"),
        ("ae", "a"),
        ("oe", "o"),
        ("ue", "u"),
        ("tz", "ts"),
        ("x", "ks"),
        ("w", "v"),
        ("y", "i"),
        ("j", "i"),
        ("q", "k"),
        ("c", "k"),
    ):
        key = key.replace(old, new)
    key = re.sub(r"(.)\1+", r"\1", key)  # doubled letters: "Iurii" ~ "Yuri"
    return key or None


_SOUNDEX_CODES: Final[Mapping[str, str]] = {
    **dict.fromkeys("bfpv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
}


def soundex(name: str | None) -> str | None:
    """American Soundex (``"Robert"`` -> ``"R163"``) of a name's letters, or ``None``."""
    text = normalise_name(name)
    if text is None:
        return None
    letters = text.replace(" ", "")
    first = letters[0]
    digits: list[str] = []
    previous = _SOUNDEX_CODES.get(first, "")
    for ch in letters[1:]:
        code = _SOUNDEX_CODES.get(ch, "")
        if code and code != previous:
            digits.append(code)
            if len(digits) == 3:
                break
        if ch not in "hw":  # h and w do not separate equal codes; vowels do
            previous = code
    return (first.upper() + "".join(digits)).ljust(4, "0")


# --------------------------------------------------------------------------- given names

#: Nickname and cross-language variant groups of common given names, one group a line:
#: ``group: variants``. A name belongs to every group it is listed in ("alex" to both
#: alexander and alexandra).
_NICKNAME_TABLE: Final = """
alexander: alex alec aleksandr alejandro alessandro sasha sandy
alexandra: alex alexa aleksandra alejandra sasha sandra sandy
andrew: andy drew andrei andrey andres andrea andreas
anthony: tony antonio anton antoine
benjamin: ben benny benji
catherine: katherine kathryn katharine kate katie kathy cathy kat ekaterina yekaterina
    katya katarina catalina
charles: charlie chuck carlos carl karl
christopher: chris kit cristobal christoph
daniel: dan danny danila
david: dave davey davide
deborah: debbie debra deb
dmitry: dmitri dmitrii dima
edward: ed eddie ted teddy ned eduardo
elizabeth: liz lizzie beth betty bette eliza elisabeth lisa libby elisabet isabel elizaveta
francis: frank francisco francesco franz paco pancho frances fran francesca francisca
gregory: greg gregorio grigory
helen: helena elena ellen elaine lena yelena
james: jim jimmy jamie diego santiago jaime
jennifer: jen jenny jenn
john: jack johnny jon juan ivan giovanni johann johannes jean sean shaun ian evan
joseph: joe joey jose giuseppe josef pepe osip
kenneth: ken kenny
margaret: maggie meg peggy margo marge margarita greta rita
maria: mary marie mariya marija molly polly masha
matthew: matt matteo mateo matvei matthias
michael: mike mikey mick mikhail miguel michel michele misha
nicholas: nick nicky nicolas nikolai nikolay nicola klaus
patricia: pat patty patsy trish tricia
patrick: pat paddy patricio
peter: pete pedro pietro pyotr piotr pierre petr
richard: rich rick ricky richie dick ricardo riccardo
robert: rob robbie bob bobby bert roberto
rebecca: becky becca rebeca
samuel: sam sammy
stephen: steven steve stevie stefan esteban stepan stephan
susan: sue susie suzanne susanna suzy
thomas: tom tommy tomas tommaso
timothy: tim timmy
victoria: vicky vicki tori viktoria
william: will bill billy willy liam guillermo wilhelm
"""


def _build_variant_index() -> Mapping[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    for line in re.sub(r"\n\s+", " ", _NICKNAME_TABLE).strip().splitlines():
        group, variants = line.split(":")
        for name in (group, *variants.split()):
            index.setdefault(name, set()).add(group)
    return {name: frozenset(groups) for name, groups in index.items()}


_VARIANT_INDEX: Final = _build_variant_index()


def given_name_groups(given: str | None) -> tuple[str, ...]:
    """The name tokens of ``given`` plus the nickname groups each token belongs to.

    Two given names that share an entry are the same name in another form: a nickname
    (``"Bill"``/``"William"``), a language variant (``"José"``/``"Joseph"``) or one part of
    a compound name (``"María José"``/``"Maria"``).
    """
    text = normalise_name(given)
    if text is None:
        return ()
    keys: set[str] = set()
    for token in text.split():
        if len(token) < 2:  # an initial is not a name
            continue
        keys.add(token)
        keys.update(f"~{group}" for group in _VARIANT_INDEX.get(token, ()))
    return tuple(sorted(keys))


# --------------------------------------------------------------------------- identifiers


def normalise_national_id(value: str | None) -> str | None:
    """A US SSN as its nine digits (``"999-12-3456"`` -> ``"999123456"``), else ``None``.

    Anything that is not nine digits, and the placeholders registration desks type when the
    patient does not know it (all one digit, 123456789, group 00, serial 0000, area 000 or
    666), count as missing. Area 9xx is kept: synthetic data (Synthea) uses it.
    """
    if value is None:
        return None
    digits = _NON_DIGIT.sub("", value)
    if len(digits) != 9 or len(set(digits)) == 1 or digits in {"123456789", "987654321"}:
        return None
    if digits[:3] in {"000", "666"} or digits[3:5] == "00" or digits[5:] == "0000":
        return None
    return digits


def normalise_postal_code(value: str | None) -> str | None:
    """Upper-case letters and digits; a US ZIP+4 keeps its five digits; all zeros is missing."""
    if value is None:
        return None
    code = re.sub(r"[^0-9A-Z]", "", value.upper())
    if re.fullmatch(r"\d{9}", code):
        code = code[:5]
    if not code or set(code) == {"0"}:
        return None
    return code


def normalise_phone(value: str | None) -> str | None:
    """The last ten digits of a phone number (country code 1 dropped); fewer than seven: None."""
    if value is None:
        return None
    digits = _NON_DIGIT.sub("", value)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) < 7 or len(set(digits)) == 1:
        return None
    return digits[-10:]


_GENDERS: Final[Mapping[str, str]] = {
    "m": "male",
    "male": "male",
    "man": "male",
    "1": "male",
    "f": "female",
    "female": "female",
    "woman": "female",
    "w": "female",
    "2": "female",
    "o": "other",
    "other": "other",
    "x": "other",
    "diverse": "other",
}


def normalise_gender(value: str | None) -> str | None:
    """FHIR administrative gender: ``male``/``female``/``other``; unknown or blank is None."""
    text = normalise_text(value)
    return None if text is None else _GENDERS.get(text)


_STREET_WORDS: Final[Mapping[str, str]] = {
    "street": "st",
    "str": "st",
    "avenue": "ave",
    "av": "ave",
    "road": "rd",
    "drive": "dr",
    "lane": "ln",
    "boulevard": "blvd",
    "court": "ct",
    "place": "pl",
    "square": "sq",
    "terrace": "ter",
    "highway": "hwy",
    "parkway": "pkwy",
    "apartment": "apt",
    "suite": "ste",
    "unit": "apt",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
}


def normalise_address_line(value: str | None) -> str | None:
    """An address line as words with the usual street-type abbreviations unified."""
    text = normalise_text(value)
    if text is None:
        return None
    return " ".join(_STREET_WORDS.get(word, word) for word in text.split())


def normalise_city(value: str | None) -> str | None:
    """A city name as words of letters and digits."""
    text = normalise_text(value)
    if text is not None and text.startswith("st "):
        text = "saint " + text[3:]
    return text


# --------------------------------------------------------------------------- records


@lru_cache(maxsize=1 << 16)
def normalise_record(record: DemographicRecord) -> NormalisedRecord:
    """Derive every comparison and blocking column the matcher uses from one record.

    Cached (records are immutable): the existing records passed again and again to
    incremental matching are normalised once.
    """
    family = normalise_name(record.family)
    given = normalise_name(record.given)
    birth = record.birth_date
    return NormalisedRecord(
        record_id=record.record_id,
        domain=record.domain,
        family=None if family is None else family.replace(" ", ""),
        family_names=_family_names(record.family, record.other_family),
        family_key=transliteration_key(family),
        family_soundex=soundex(family),
        given=given,
        given_groups=given_name_groups(given),
        given_key=transliteration_key(given),
        given_soundex=soundex(None if given is None else given.split()[0]),
        birth_date=None if birth is None else birth.isoformat(),
        birth_year=None if birth is None else birth.year,
        gender=normalise_gender(record.gender),
        national_id=normalise_national_id(record.national_id),
        postal_code=normalise_postal_code(record.postal_code),
        city=normalise_city(record.city),
        address_line=normalise_address_line(record.address_line),
        phone=normalise_phone(record.phone),
    )
