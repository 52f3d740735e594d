"""The dependency rules of DESIGN.md, checked on the import statements of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "app",
    "graph",
    "ontology",
    "nlp",
    "resolvers",
    "loaders",
    "terminology",
    "access",
    "identity",
    "mpi",
    "shadow",
    "drugs",
    "research",
)

# (imported top-level module, packages allowed to import it)
RULES = {
    "neo4j": {"graph"},
    "strawberry": {"resolvers", "app"},
    "spacy": {"nlp"},
    "transformers": {"nlp"},
    "onnxruntime": {"nlp"},
    "langchain": {"nlp"},
    "langchain_core": {"nlp"},
    "resolvers": {"resolvers", "app"},
    "jwt": {"access"},  # token signing and verification in one place
}
FORBIDDEN_PAIRS = {("loaders", "graph"), ("identity", "graph")}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules() -> list[tuple[str, Path]]:
    return [(pkg, path) for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize(("package", "path"), _modules(), ids=lambda v: str(v))
def test_module_respects_dependency_rules(package: str, path: Path) -> None:
    for name in _imports(path):
        allowed = RULES.get(name)
        assert allowed is None or package in allowed, f"{path.relative_to(ROOT)} imports {name}"
        assert (package, name) not in FORBIDDEN_PAIRS, f"{path.relative_to(ROOT)} imports {name}"


def test_the_docker_image_copies_every_package_the_wheel_ships() -> None:
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["packages"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    missing = [p for p in packages if f"COPY {p}/ {p}/" not in dockerfile]
    assert missing == [], f"Dockerfile does not copy {missing}"
