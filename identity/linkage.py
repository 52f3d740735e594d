"""Probabilistic record linkage of demographic records (a master patient index) on splink.

The engine is graph-agnostic: :class:`~identity.model.DemographicRecord` values in, scored
record pairs, decisions and clusters out. It is a Fellegi-Sunter model run by splink on an
in-memory, offline DuckDB (no extension is installed or auto-loaded from the network):

* **Training** (:meth:`Linker.train`) estimates the prior match probability from two
  deterministic rules, the u probabilities by random sampling of record pairs (seeded) and
  the m probabilities by expectation maximisation over three blocking rules, then corrects
  u for the duplicates a small batch has among its random pairs. The result, a
  :class:`TrainedModel`, is plain JSON and is reused for every later match: nothing is
  re-estimated when records arrive.
* **Scoring** compares candidate pairs found by :data:`BLOCKING_RULES` on the comparisons
  of :data:`COMPARISONS`. Each :class:`ScoredPair` carries, per field, the name of the
  comparison level it fell in: what a data steward reads to judge a match.
* **Rules** on top of the model: a trustworthy identifier (same national id *and* same
  birth date) links with probability 1 (:data:`RULE_NATIONAL_ID_BIRTH_DATE`). Two guards
  keep pairs out of automatic linking, for review only: national ids that conflict
  (:data:`GUARD_CONFLICTING_NATIONAL_ID`), and different given names without a national id
  in common, the signature of twins and other relatives sharing a home
  (:data:`GUARD_POSSIBLE_RELATIVE`).
* **Decisions**: :func:`classify` splits pairs at two probability thresholds into
  automatic links, a review queue and rejections; :func:`cluster` turns automatic links
  into persons (connected components).
* **Incremental**: :func:`match_new` scores only new-vs-existing and new-vs-new pairs
  (splink's ``predict_between``/``predict_within``), :func:`match_demographics` ranks the
  existing records for one query record (like FHIR ``Patient/$match``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type stubs
import splink
from splink import DuckDBAPI
from splink.internals.exceptions import EMTrainingException
from splink.internals.splink_dataframe import SplinkDataFrame

from identity.model import DemographicRecord, NormalisedRecord, normalise_record

__all__ = [
    "BLOCKING_KEYS",
    "BLOCKING_RULES",
    "COMPARISONS",
    "DEFAULT_AUTO_THRESHOLD",
    "DEFAULT_REVIEW_THRESHOLD",
    "EM_BLOCKING_RULES",
    "GUARD_CONFLICTING_NATIONAL_ID",
    "GUARD_POSSIBLE_RELATIVE",
    "MODEL_FORMAT",
    "RULE_NATIONAL_ID_BIRTH_DATE",
    "Decisions",
    "Linker",
    "ScoredPair",
    "TrainedModel",
    "blocking_keys",
    "classify",
    "cluster",
    "match_demographics",
    "match_new",
    "predict",
]

JSON = dict[str, Any]

#: Version of the JSON layout of :class:`TrainedModel`.
MODEL_FORMAT: Final = 1
#: Evidence of a pair linked by the deterministic identifier rule.
RULE_NATIONAL_ID_BIRTH_DATE: Final = "national_id+birth_date"
#: Evidence ``guard`` of a pair that is never linked automatically: both records have a
#: national id and they differ by more than one edit. Either one is badly mistyped or the
#: records are two people (twins have near-identical demographics and their own SSN); the
#: model weighs the conflict, but a data steward decides.
GUARD_CONFLICTING_NATIONAL_ID: Final = "conflicting_national_id"
#: Evidence ``guard`` of a pair that is never linked automatically: different given names
#: and no national id in common. Twins, and siblings or spouses sharing a home, agree on
#: family, address, phone and (twins) birth date, together enough evidence for the model
#: to link them; nothing but the given name and the identifier tells them apart. A data
#: steward decides such pairs. Also: national ids one edit apart with given names that are
#: not the same name — twins often get consecutive SSNs, so a "typo" in the identifier plus a
#: different given name is as likely a sibling as one person mistyped twice.
GUARD_POSSIBLE_RELATIVE: Final = "possible_relative"
#: Given-name levels that say "the same name" (spelled alike, a nickname, a transliteration).
_SAME_GIVEN: Final = frozenset({"exact", "nickname_or_variant", "transliteration_variant"})
#: Match probability at and above which a pair links without a human. On ~1,070 perturbed
#: records of 360 Synthea people (doubled error rates, shared common names, twins) no
#: non-match scored 0.95 or more while 0.9 let some in; 0.99 keeps a margin (a false merge
#: of two patients costs more than a missed link, which review still catches) for about
#: 1% of recall. With the test's (single) error rates any threshold from 0.5 to 0.999
#: gives P = 1.0 and recall 98.6-99.1%.
DEFAULT_AUTO_THRESHOLD: Final = 0.99
#: Match probability at and above which a pair not linked automatically goes to review.
#: On the same evaluation no true pair scored below 0.1 (a few between 0.1 and 0.5), and
#: lowering it further only added non-matches to the queue.
DEFAULT_REVIEW_THRESHOLD: Final = 0.1

_LINKER_UID: Final = "medshadow_mpi"
_UNIQUE_ID: Final = "record_id"
#: Pairs sampled to estimate u: the whole pair space up to ~4,500 records, a sample above.
_MAX_U_PAIRS: Final = 1e7
#: Recall assumed for the deterministic rules that estimate the prior match probability.
_PRIOR_RULE_RECALL: Final = 0.6
#: EM passes, each followed by taking the matches out of u (_discount_matches_from_u).
_EM_ROUNDS: Final = 2
#: Bounds for m and u probabilities that training could not observe (see _smooth).
_MIN_PROBABILITY: Final = 1e-5


# --------------------------------------------------------------------------- the model spec


def _level(label: str, sql: str, *, null: bool = False) -> JSON:
    level: JSON = {"sql_condition": sql, "label_for_charts": label}
    if null:
        level["is_null_level"] = True
    return level


def _null(*columns: str) -> JSON:
    sql = " OR ".join(f'"{c}_l" IS NULL OR "{c}_r" IS NULL' for c in columns)
    return _level("null", sql, null=True)


def _else() -> JSON:
    return _level("different", "ELSE")


def _jaro_winkler(column: str, threshold: float) -> JSON:
    return _level(
        f"jaro_winkler>={threshold:g}",
        f'jaro_winkler_similarity("{column}_l", "{column}_r") >= {threshold}',
    )


#: The comparisons (one per evidence key) and their levels, best level first. Levels are
#: SQL over the normalised columns of :class:`~identity.model.NormalisedRecord`, suffixed
#: ``_l``/``_r``; the level label is what :attr:`ScoredPair.evidence` reports.
COMPARISONS: Final[tuple[JSON, ...]] = (
    {
        "output_column_name": "national_id",
        "comparison_description": "National id (SSN digits): exact, one edit, different",
        "comparison_levels": [
            _null("national_id"),
            _level("exact", '"national_id_l" = "national_id_r"'),
            _level("1_edit", 'damerau_levenshtein("national_id_l", "national_id_r") <= 1'),
            _else(),
        ],
    },
    {
        "output_column_name": "family",
        "comparison_description": "Family name, also against maiden/other names",
        "comparison_levels": [
            _null("family"),
            _level("exact", '"family_l" = "family_r"'),
            _level("maiden_or_other_name", 'list_has_any("family_names_l", "family_names_r")'),
            _level("transliteration_variant", '"family_key_l" = "family_key_r"'),
            _jaro_winkler("family", 0.92),
            _jaro_winkler("family", 0.8),
            _else(),
        ],
    },
    {
        "output_column_name": "given",
        "comparison_description": "Given name: exact, nickname/variant, spelling, initial",
        "comparison_levels": [
            _null("given"),
            _level("exact", '"given_l" = "given_r"'),
            _level("nickname_or_variant", 'list_has_any("given_groups_l", "given_groups_r")'),
            _level("transliteration_variant", '"given_key_l" = "given_key_r"'),
            _jaro_winkler("given", 0.92),
            _jaro_winkler("given", 0.8),
            _level(
                "initial",
                '(length("given_l") = 1 OR length("given_r") = 1)'
                ' AND left("given_l", 1) = left("given_r", 1)',
            ),
            _else(),
        ],
    },
    {
        "output_column_name": "birth_date",
        "comparison_description": "Birth date: exact, day/month swapped, typo, year off",
        "comparison_levels": [
            _null("birth_date"),
            _level("exact", '"birth_date_l" = "birth_date_r"'),
            _level(
                "day_month_swapped",
                'substr("birth_date_l", 1, 4) = substr("birth_date_r", 1, 4)'
                ' AND substr("birth_date_l", 6, 2) = substr("birth_date_r", 9, 2)'
                ' AND substr("birth_date_l", 9, 2) = substr("birth_date_r", 6, 2)',
            ),
            _level(
                "one_digit_typo",
                'damerau_levenshtein("birth_date_l", "birth_date_r") <= 1',
            ),
            _level(
                "year_off_by_1",
                'substr("birth_date_l", 6, 5) = substr("birth_date_r", 6, 5)'
                ' AND abs("birth_year_l" - "birth_year_r") = 1',
            ),
            _level("same_year", '"birth_year_l" = "birth_year_r"'),
            _else(),
        ],
    },
    {
        "output_column_name": "gender",
        "comparison_description": "Administrative gender",
        "comparison_levels": [
            _null("gender"),
            _level("exact", '"gender_l" = "gender_r"'),
            _else(),
        ],
    },
    {
        # One comparison for the whole household contact: address line, postal code, city
        # and phone are strongly correlated (and shared by twins and other relatives), and
        # scoring them separately would count one shared home several times.
        "output_column_name": "address",
        "comparison_description": "Address and phone: same home, same phone, same area",
        "comparison_levels": [
            _level(
                "null",
                " AND ".join(
                    f'("{c}_l" IS NULL OR "{c}_r" IS NULL)'
                    for c in ("address_line", "postal_code", "city", "phone")
                ),
                null=True,
            ),
            _level(
                "same_address_line+phone",
                '"address_line_l" = "address_line_r" AND "phone_l" = "phone_r"',
            ),
            _level("same_address_line", '"address_line_l" = "address_line_r"'),
            _level("same_phone", '"phone_l" = "phone_r"'),
            _level(
                "address_line_jaro_winkler>=0.9",
                'jaro_winkler_similarity("address_line_l", "address_line_r") >= 0.9',
            ),
            _level("same_postal_code", '"postal_code_l" = "postal_code_r"'),
            _level("same_city", '"city_l" = "city_r"'),
            _else(),
        ],
    },
)

#: Candidate pairs are those that agree on all columns of at least one of these keys
#: (OR'ed; splink scores a pair once). Each key keeps pairs that the others lose to a
#: typical error: a wrong or missing SSN (2-7), a day/month swap or typo in the date (1,
#: 3-7), a maiden name or a family typo changing its Soundex (1, 2, 4, 6, 7), typos in both
#: names (1, 2, 6, 7), a moved address (1-6).
BLOCKING_KEYS: Final[tuple[tuple[str, ...], ...]] = (
    ("national_id",),
    ("birth_date",),
    ("birth_year", "family_soundex"),
    ("birth_year", "given_soundex"),
    ("family_soundex", "given_soundex"),
    ("phone", "given_soundex"),
    ("address_line", "birth_year"),
)
#: :data:`BLOCKING_KEYS` as splink blocking rules.
BLOCKING_RULES: Final[tuple[str, ...]] = tuple(
    " AND ".join(f"l.{column} = r.{column}" for column in key) for key in BLOCKING_KEYS
)

#: One EM session per rule; m of a comparison is estimated in the sessions whose rule does
#: not use its columns, so each comparison gets estimates from at least one session.
EM_BLOCKING_RULES: Final[tuple[str, ...]] = (
    "l.birth_date = r.birth_date",
    "l.national_id = r.national_id",
    "l.family = r.family AND l.given = r.given",
)

#: Rules that (almost) only admit true matches, used to estimate the prior.
_PRIOR_RULES: Final[tuple[str, ...]] = (
    "l.national_id = r.national_id AND l.birth_date = r.birth_date",
    "l.family = r.family AND l.given = r.given AND l.birth_date = r.birth_date",
)

_SCHEMA: Final = pa.schema(
    [
        ("record_id", pa.string()),
        ("domain", pa.string()),
        ("family", pa.string()),
        ("family_names", pa.list_(pa.string())),
        ("family_key", pa.string()),
        ("family_soundex", pa.string()),
        ("given", pa.string()),
        ("given_groups", pa.list_(pa.string())),
        ("given_key", pa.string()),
        ("given_soundex", pa.string()),
        ("birth_date", pa.string()),
        ("birth_year", pa.int32()),
        ("gender", pa.string()),
        ("national_id", pa.string()),
        ("postal_code", pa.string()),
        ("city", pa.string()),
        ("address_line", pa.string()),
        ("phone", pa.string()),
    ]
)


def _settings() -> JSON:
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": _UNIQUE_ID,
        "comparisons": json.loads(json.dumps(COMPARISONS)),  # a deep copy
        "blocking_rules_to_generate_predictions": list(BLOCKING_RULES),
        "retain_matching_columns": True,
        "retain_intermediate_calculation_columns": False,
        "em_convergence": 0.0001,
        "max_iterations": 25,
        "linker_uid": _LINKER_UID,
    }


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True, slots=True)
class ScoredPair:
    """A candidate pair of records with the model's verdict.

    ``left < right`` (record ids). ``evidence`` maps each comparison (``national_id``,
    ``family``, ``given``, ``birth_date``, ``gender``, ``address``) to the
    label of the level the pair fell in (``"exact"``, ``"jaro_winkler>=0.92"``,
    ``"day_month_swapped"``, ``"null"`` when a side lacks the field, ...), plus ``rule``
    when a deterministic rule decided and ``guard`` when a pair must not auto-link.
    """

    left: str
    right: str
    match_weight: float
    match_probability: float
    evidence: dict[str, str] = field(hash=False, compare=True)


@dataclass(frozen=True, slots=True)
class Decisions:
    """Pairs split by :func:`classify`, each tuple sorted by falling probability."""

    auto_links: tuple[ScoredPair, ...]
    review: tuple[ScoredPair, ...]
    rejected: tuple[ScoredPair, ...]
    auto_threshold: float
    review_threshold: float


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """A trained linkage model: splink settings with their m/u parameters, as JSON.

    ``settings`` is a splink 5 settings dictionary (loadable by ``splink.Linker``), so the
    model can also be inspected with splink's own charts; ``training`` records what it was
    trained on.
    """

    settings: JSON
    training: JSON

    def to_json(self) -> str:
        """Serialise to JSON (stable key order: equal models give identical text)."""
        payload = {"format": MODEL_FORMAT, "settings": self.settings, "training": self.training}
        return json.dumps(payload, sort_keys=True, indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> TrainedModel:
        """Load a model written by :meth:`to_json`.

        Raises:
            ValueError: not such a model, or one of another format version.
        """
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not a trained linkage model: {err}") from err
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a trained linkage model of format {MODEL_FORMAT}")
        settings, training = payload.get("settings"), payload.get("training")
        if not isinstance(settings, dict) or not isinstance(training, dict):
            raise ValueError("trained linkage model lacks settings or training")
        return cls(settings=settings, training=training)

    def level_labels(self) -> dict[str, dict[int, str]]:
        """For each comparison, its splink comparison-vector values mapped to level labels."""
        labels: dict[str, dict[int, str]] = {}
        for comparison in self.settings["comparisons"]:
            levels = comparison["comparison_levels"]
            value = sum(1 for lv in levels if not lv.get("is_null_level")) - 1
            by_value: dict[int, str] = {}
            for level in levels:
                if level.get("is_null_level"):
                    by_value[-1] = level["label_for_charts"]
                else:
                    by_value[value] = level["label_for_charts"]
                    value -= 1
            labels[comparison["output_column_name"]] = by_value
        return labels

    def match_weights(self) -> dict[str, dict[str, float]]:
        """Each comparison level's match weight (log2 m/u): the model at a glance."""
        weights: dict[str, dict[str, float]] = {}
        for comparison in self.settings["comparisons"]:
            levels = weights.setdefault(comparison["output_column_name"], {})
            for level in comparison["comparison_levels"]:
                if not level.get("is_null_level"):
                    m, u = level["m_probability"], level["u_probability"]
                    levels[level["label_for_charts"]] = round(math.log2(m / u), 3)
        return weights


# --------------------------------------------------------------------------- splink plumbing


def _connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that never reaches the network.

    Extensions are neither installed nor auto-loaded (everything used is in DuckDB's core),
    and one thread makes the floating-point sums of training, hence the model, reproducible.
    """
    return duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "threads": 1,
        },
    )


def _table(records: Iterable[NormalisedRecord]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in _SCHEMA.names}
    for record in records:
        for name in _SCHEMA.names:
            value = getattr(record, name)
            columns[name].append(list(value) if isinstance(value, tuple) else value)
    return pa.table(columns, schema=_SCHEMA)


def _normalised(records: Iterable[DemographicRecord]) -> list[NormalisedRecord]:
    out: list[NormalisedRecord] = []
    seen: set[str] = set()
    for record in records:
        if record.record_id in seen:
            raise ValueError(f"duplicate record_id {record.record_id!r}")
        seen.add(record.record_id)
        out.append(normalise_record(record))
    return out


class _HandledWarningsFilter(logging.Filter):
    """Drops the splink warnings that training handles itself: levels EM could not train
    (:func:`_smooth` fills them in) and a prior of 0 (floored). Splink has no handler with
    ``log_level=None``, so logging's last-resort handler would print them to stderr."""

    HANDLED = ("not observed in dataset", "led to no observed matches")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.HANDLED)


@contextmanager
def _quiet_handled_warnings() -> Iterator[None]:
    loggers = [
        logging.getLogger("splink.internals.expectation_maximisation"),
        logging.getLogger("splink.internals.linker_components.training"),
    ]
    quiet = _HandledWarningsFilter()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


class _Session:
    """One DuckDB database with a splink linker over some registered record tables."""

    def __init__(
        self,
        settings: JSON,
        tables: Mapping[str, Sequence[NormalisedRecord]],
        *,
        validate: bool = False,
    ):
        self.db_api = DuckDBAPI(_connection())
        self.frames: dict[str, SplinkDataFrame] = {
            name: self.db_api.register(_table(rows), table_name=name)
            for name, rows in tables.items()
        }
        self.linker = self.new_linker(settings, validate=validate)

    def new_linker(self, settings: JSON, *, validate: bool = False) -> splink.Linker:
        """A linker on the first table; ``validate`` has splink check the settings (slow,
        and needless for the settings of a model this module trained)."""
        first = next(iter(self.frames.values()))
        return splink.Linker(first, settings, log_level=None, validate_settings=validate)

    def close(self) -> None:
        self.db_api.duckdb_con.close()


def _smooth(settings: JSON, *, u_pairs: float) -> None:
    """Give every level an m and a u, bounded away from 0 and 1.

    A level never seen in the u sample (two random people one SSN digit apart) has no u
    estimate, and one that EM never saw among matches has no m; splink would use 1e-6 for
    either, a weight of about ±20 bits from no evidence at all. Instead:

    * u unseen: half a pair out of the sample (``0.5 / u_pairs``);
    * m unseen: the smallest m of the model, but no more than u (never positive evidence);
    * both unseen: m = u, a weight of 0.

    Every value is then clamped to [1e-5, 1 - 1e-5].
    """
    trained_m = [
        lv["m_probability"]
        for comparison in settings["comparisons"]
        for lv in comparison["comparison_levels"]
        if isinstance(lv.get("m_probability"), float)
    ]
    m_floor = min(trained_m, default=_MIN_PROBABILITY)
    u_floor = 0.5 / max(u_pairs, 1.0)
    for comparison in settings["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            has_m, has_u = isinstance(m, float), isinstance(u, float)
            u = u if has_u else u_floor
            m = m if has_m else (min(m_floor, u) if has_u else u)
            level["m_probability"] = min(max(m, _MIN_PROBABILITY), 1 - _MIN_PROBABILITY)
            level["u_probability"] = min(max(u, _MIN_PROBABILITY), 1 - _MIN_PROBABILITY)


def _level_probabilities(settings: JSON, key: str) -> dict[tuple[str, str], float]:
    return {
        (comparison["output_column_name"], level["label_for_charts"]): level[key]
        for comparison in settings["comparisons"]
        for level in comparison["comparison_levels"]
        if isinstance(level.get(key), float)
    }


def _expected_match_rate(session: _Session, linker: splink.Linker, n: int) -> float:
    """The prior match probability the model itself implies: expected matches among the
    candidate pairs (the sum of their match probabilities) over all ``n(n-1)/2`` pairs.

    Pairs outside blocking are taken to be non-matches, as the model treats them anyway.
    This replaces the first estimate from deterministic rules, whose recall is a guess.
    """
    frame = linker.inference.predict(warning_mode="never")
    # The table name is splink's own, not user input.
    sql = f"SELECT coalesce(sum(match_probability), 0)::DOUBLE FROM {frame.physical_name}"  # noqa: S608
    [(matches,)] = session.db_api.duckdb_con.execute(sql).fetchall()
    frame.drop_table_from_database_and_remove_from_cache()
    total = n * (n - 1) / 2
    return min(max(float(matches) / total, 1.0 / total), 0.5)


def _discount_matches_from_u(
    settings: JSON, observed: Mapping[tuple[str, str], float], *, u_pairs: float
) -> None:
    """Take the true matches out of the u estimated from random pairs.

    Random pairs are almost all non-matches in a large population, but not in a small one
    where each person has several records: there a level's frequency among random pairs is
    ``f = lambda * m + (1 - lambda) * u`` (lambda: the prior match probability), and taking
    ``f`` for u makes agreement look common and weak. With m from EM this solves for u,
    ``u = (f - lambda * m) / (1 - lambda)``, floored at half a sampled pair and renormalised
    per comparison. In a large population the correction is negligible.
    """
    prior = float(settings["probability_two_random_records_match"])
    u_floor = max(_MIN_PROBABILITY, 0.5 / max(u_pairs, 1.0))
    for comparison in settings["comparisons"]:
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        corrected = []
        for level in levels:
            f = observed.get((comparison["output_column_name"], level["label_for_charts"]), 0.0)
            u = (f - prior * level["m_probability"]) / (1 - prior)
            corrected.append(max(u, u_floor))
        total = sum(corrected)
        for level, u in zip(levels, corrected, strict=True):
            level["u_probability"] = u / total


def _round_floats(value: Any) -> Any:
    """Round trained parameters to 12 significant digits (reproducible, no float noise)."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _round_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round_floats(v) for v in value]
    return value


def _predictions(frame: SplinkDataFrame) -> list[JSON]:
    rows: list[JSON] = frame.as_record_list()
    frame.drop_table_from_database_and_remove_from_cache()
    return rows


def _to_pairs(model: TrainedModel, rows: Iterable[JSON]) -> list[ScoredPair]:
    labels = model.level_labels()
    pairs: dict[tuple[str, str], ScoredPair] = {}
    for row in rows:
        left, right = str(row[f"{_UNIQUE_ID}_l"]), str(row[f"{_UNIQUE_ID}_r"])
        if left == right:
            continue
        if right < left:
            left, right = right, left
        evidence = {name: by_value[int(row[f"gamma_{name}"])] for name, by_value in labels.items()}
        weight = float(row["match_weight"])
        probability = float(row["match_probability"])
        if (
            row["national_id_l"] is not None
            and row["national_id_l"] == row["national_id_r"]
            and row["birth_date_l"] is not None
            and row["birth_date_l"] == row["birth_date_r"]
        ):
            evidence["rule"] = RULE_NATIONAL_ID_BIRTH_DATE
            probability = 1.0
        elif evidence["national_id"] == "different":
            evidence["guard"] = GUARD_CONFLICTING_NATIONAL_ID
        elif (evidence["given"] == "different" and evidence["national_id"] == "null") or (
            evidence["national_id"] == "1_edit" and evidence["given"] not in _SAME_GIVEN
        ):
            evidence["guard"] = GUARD_POSSIBLE_RELATIVE
        pairs[(left, right)] = ScoredPair(left, right, weight, probability, evidence)
    return sorted(pairs.values(), key=_rank)


def _rank(pair: ScoredPair) -> tuple[float, float, str, str]:
    return (-pair.match_probability, -pair.match_weight, pair.left, pair.right)


# --------------------------------------------------------------------------- training


def _estimate(session: _Session, *, seed: int, n: int, u_pairs: float) -> JSON:
    """The training steps of :meth:`Linker.train`; returns the trained settings."""
    total_pairs = n * (n - 1) / 2
    linker = session.linker
    linker.training.estimate_probability_two_random_records_match(
        list(_PRIOR_RULES), recall=_PRIOR_RULE_RECALL
    )
    settings: JSON = linker.misc.save_model_to_json()
    if settings["probability_two_random_records_match"] <= 0:  # no rule matched
        settings["probability_two_random_records_match"] = 1 / total_pairs
        linker = session.new_linker(settings)
    linker.training.estimate_u_using_random_sampling(
        max_pairs=_MAX_U_PAIRS, seed=seed, min_count_per_level=None
    )
    observed = _level_probabilities(linker.misc.save_model_to_json(), "u_probability")
    for _ in range(_EM_ROUNDS):
        linker = _expectation_maximisation(session, linker)
        settings = linker.misc.save_model_to_json()
        _smooth(settings, u_pairs=u_pairs)
        settings["probability_two_random_records_match"] = _expected_match_rate(
            session, session.new_linker(settings), n
        )
        _discount_matches_from_u(settings, observed, u_pairs=u_pairs)
        linker = session.new_linker(settings)
    return settings


def _expectation_maximisation(session: _Session, linker: splink.Linker) -> splink.Linker:
    """One EM session per rule of :data:`EM_BLOCKING_RULES`; returns the trained linker.

    A rule that blocks (almost) no pairs makes splink fail: no pairs at all raises
    EMTrainingException, a single pair drives the session's prior to 0 and a ValueError
    (log of 0). Such a rule is skipped (its comparisons keep their other estimates or are
    smoothed); if every rule fails, the batch has too few duplicates to learn from. A
    failed session leaves splink's linker without the comparisons the rule blocked on
    (splink 5.0 filters them in place), so the linker is rebuilt from the last good model.

    Raises:
        ValueError: no rule blocked enough pairs to train on.
    """
    failures: list[str] = []
    for rule in EM_BLOCKING_RULES:
        before: JSON = linker.misc.save_model_to_json()
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(rule)
        except (EMTrainingException, ValueError) as err:
            failures.append(f"{rule}: {str(err).splitlines()[0]}")
            linker = session.new_linker(before)
    if len(failures) == len(EM_BLOCKING_RULES):
        raise ValueError(
            "cannot train: too few candidate duplicate pairs for expectation maximisation "
            "(train on a batch that holds several records of many people); " + "; ".join(failures)
        )
    return linker


class Linker:
    """Trains the splink model of :data:`COMPARISONS` on a batch of records."""

    @classmethod
    def train(cls, records: Sequence[DemographicRecord], *, seed: int = 42) -> TrainedModel:
        """Estimate the model's parameters from unlabelled records (deterministic per seed).

        1. prior: pairs found by :data:`_PRIOR_RULES`, assumed to be 60% of all matches;
        2. u: frequency of each comparison level among random pairs (splink's
           ``estimate_u_using_random_sampling``: every pair up to 1e7 pairs, beyond that a
           sample chosen by a hash of record id and ``seed``);
        3. m: expectation maximisation (splink), one session per rule of
           :data:`EM_BLOCKING_RULES`; levels it cannot see are smoothed (:func:`_smooth`);
        4. the prior becomes the match rate the model implies, the true matches among the
           random pairs are taken out of u (:func:`_discount_matches_from_u`), and 3-4 run
           once more from there.

        Everything runs single-threaded on fixed inputs, so one seed gives one model.

        Raises:
            ValueError: fewer than two records, duplicate record ids, or too few
                duplicates in the batch to learn from.
        """
        rows = _normalised(records)
        if len(rows) < 2:
            raise ValueError("training needs at least two records")
        n = len(rows)
        u_pairs = min(_MAX_U_PAIRS, n * (n - 1) / 2)
        session = _Session(_settings(), {"records": rows}, validate=True)
        try:
            with _quiet_handled_warnings():
                settings = _estimate(session, seed=seed, n=n, u_pairs=u_pairs)
        finally:
            session.close()
        settings["linker_uid"] = _LINKER_UID
        training_info: JSON = {
            "records": n,
            "domains": len({r.domain for r in rows}),
            "seed": seed,
            "u_pairs": u_pairs,
            "splink_version": splink.__version__,
        }
        return TrainedModel(settings=_round_floats(settings), training=training_info)


# --------------------------------------------------------------------------- scoring


def blocking_keys(record: DemographicRecord) -> frozenset[str]:
    """The blocking keys of a record, one string per rule of :data:`BLOCKING_KEYS`.

    Two records are a candidate pair exactly when their keys intersect. A store (the
    graph) that indexes these keys can fetch the few existing records that share one with
    an incoming record and pass only those as ``existing`` to :func:`match_new` or
    :func:`match_demographics`: the result is the same as with every existing record.
    """
    row = normalise_record(record)
    keys = set()
    for key in BLOCKING_KEYS:
        values = [getattr(row, column) for column in key]
        if all(v is not None for v in values):
            keys.add("+".join(key) + "=" + "|".join(str(v) for v in values))
    return frozenset(keys)


def predict(model: TrainedModel, records: Sequence[DemographicRecord]) -> list[ScoredPair]:
    """Score every candidate pair within a batch (across and within domains).

    Returns the pairs found by :data:`BLOCKING_RULES`, best first. Records of one domain
    can be duplicates too; a record is never paired with itself.

    Raises:
        ValueError: duplicate record ids.
    """
    rows = _normalised(records)
    if len(rows) < 2:
        return []
    session = _Session(model.settings, {"records": rows})
    try:
        result = _predictions(session.linker.inference.predict(warning_mode="never"))
    finally:
        session.close()
    return _to_pairs(model, result)


def match_new(
    model: TrainedModel,
    existing: Sequence[DemographicRecord],
    new: Sequence[DemographicRecord],
) -> list[ScoredPair]:
    """Score the pairs a batch of new records adds: new-vs-existing and new-vs-new.

    No retraining and no re-run over existing pairs: existing records are only blocked
    against the new ones. A new record whose ``record_id`` is already in ``existing`` is an
    update of that record: the stale version is left out instead of paired with it.

    Raises:
        ValueError: duplicate record ids within ``existing`` or within ``new``.
    """
    new_rows = _normalised(new)
    if not new_rows:
        return []
    new_ids = {r.record_id for r in new_rows}
    old_rows = [r for r in _normalised(existing) if r.record_id not in new_ids]
    tables: dict[str, Sequence[NormalisedRecord]] = {"new_records": new_rows}
    if old_rows:
        tables["existing_records"] = old_rows
    session = _Session(model.settings, tables)
    try:
        inference = session.linker.inference
        rows: list[JSON] = []
        if old_rows:
            rows += _predictions(
                inference.predict_between(
                    session.frames["new_records"],
                    session.frames["existing_records"],
                    warning_mode="never",
                )
            )
        if len(new_rows) > 1:
            rows += _predictions(
                inference.predict_within(session.frames["new_records"], warning_mode="never")
            )
    finally:
        session.close()
    return _to_pairs(model, rows)


def match_demographics(
    model: TrainedModel,
    existing: Sequence[DemographicRecord],
    query: DemographicRecord,
    limit: int = 10,
) -> list[ScoredPair]:
    """Rank the existing records that could be the person of ``query``, best first.

    Like FHIR ``Patient/$match``: up to ``limit`` candidates found by the blocking rules,
    scored by the model, with their evidence. Each pair holds ``query.record_id`` and a
    candidate's record id (in sorted order, as every :class:`ScoredPair`); decide with
    :func:`classify` as for any pair.

    Raises:
        ValueError: ``limit`` below 1, or duplicate record ids in ``existing``.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    pairs = match_new(model, existing, [query])
    return pairs[:limit]


# --------------------------------------------------------------------------- decisions


def classify(
    pairs: Iterable[ScoredPair],
    *,
    auto_threshold: float = DEFAULT_AUTO_THRESHOLD,
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
) -> Decisions:
    """Split pairs by match probability: ``>= auto_threshold`` links automatically,
    ``>= review_threshold`` goes to a data steward, the rest is rejected.

    A pair with a ``guard`` in its evidence (conflicting national ids, possible relatives)
    never links automatically: it goes to review when it reaches ``review_threshold``.

    Raises:
        ValueError: thresholds outside [0, 1] or ``review_threshold > auto_threshold``.
    """
    if not 0.0 <= review_threshold <= auto_threshold <= 1.0:
        raise ValueError(
            "need 0 <= review_threshold <= auto_threshold <= 1, got "
            f"{review_threshold} and {auto_threshold}"
        )
    auto: list[ScoredPair] = []
    review: list[ScoredPair] = []
    rejected: list[ScoredPair] = []
    for pair in sorted(pairs, key=_rank):
        p = pair.match_probability
        if p >= auto_threshold and "guard" not in pair.evidence:
            auto.append(pair)
        elif p >= review_threshold:
            review.append(pair)
        else:
            rejected.append(pair)
    return Decisions(tuple(auto), tuple(review), tuple(rejected), auto_threshold, review_threshold)


def cluster(auto_links: Iterable[ScoredPair], *, records: Iterable[str] = ()) -> list[set[str]]:
    """Connected components of the linked records: one set of record ids per person.

    ``records`` adds ids that are then returned as singletons when nothing links them.
    Deterministic: clusters are ordered by their smallest record id.
    """
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        parent.setdefault(node, node)
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    for record_id in records:
        find(record_id)
    for pair in auto_links:
        a, b = find(pair.left), find(pair.right)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[str, set[str]] = {}
    for node in parent:
        groups.setdefault(find(node), set()).add(node)
    return [groups[root] for root in sorted(groups)]
