"""Rules kept as data: one YAML list per file, each rule checked by pydantic, every bad rule
named (by id or position) in one error. Care gaps and alert rules load through here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

R = TypeVar("R")


def load_rule_list(
    path: Path, validate: Callable[[Any], R], error: type[ValueError], rule_id: Callable[[R], str]
) -> list[R]:
    """Parse ``path`` and validate each item; raise ``error`` naming the file and every bad or
    repeated rule."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise error(f"{path}: cannot read the rules: {e}") from e
    if not isinstance(data, list):
        raise error(f"{path}: expected a list of rules")
    rules: list[R] = []
    problems: list[str] = []
    for i, item in enumerate(data):
        name = item.get("id", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
        try:
            rules.append(validate(item))
        except ValidationError as e:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
            )
            problems.append(f"rule {name}: {detail}")
    ids = [rule_id(r) for r in rules]
    problems += [f"rule {d}: id used twice" for d in sorted({i for i in ids if ids.count(i) > 1})]
    if problems:
        raise error(f"{path}: " + " | ".join(problems))
    return rules
