"""Consistency check of the ontology with the HermiT reasoner (through owlready2, which ships it).

HermiT, not Pellet: owlready2's bundled Pellet needs a newer Java than the JDK 17 we run on.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import owlready2  # type: ignore[import-untyped,unused-ignore]
import rdflib
from rdflib.namespace import OWL, RDF

from ontology.errors import OntologyError
from ontology.model import ONTOLOGY_PATH

_OWL_NOTHING = str(OWL.Nothing)


@dataclass(frozen=True)
class ConsistencyReport:
    """What HermiT said about one ontology file.

    ``consistent`` is logical consistency (some model exists). A consistent ontology can still have
    unsatisfiable classes (equivalent to owl:Nothing, so no node could ever carry their label);
    they are listed in ``inconsistent_classes``, and :attr:`ok` requires both to be clean.
    """

    path: Path
    consistent: bool
    classes: int
    object_properties: int
    datatype_properties: int
    individuals: int
    inconsistent_classes: tuple[str, ...]
    error: str | None
    elapsed_seconds: float

    @property
    def ok(self) -> bool:
        """Consistent and without unsatisfiable classes."""
        return self.consistent and not self.inconsistent_classes


def check_consistency(
    path: Path = ONTOLOGY_PATH, *, ignore_unsupported_datatypes: bool = False
) -> ConsistencyReport:
    """Classify the Turtle ontology at ``path`` with HermiT and report on its consistency.

    Inconsistency is reported, not raised. Raises :class:`OntologyError` when the file cannot be
    parsed, holds no single named ``owl:Ontology``, Java is missing, or HermiT fails otherwise.
    ``elapsed_seconds`` times the reasoner run alone (JVM start included).

    HermiT rejects literals outside the OWL 2 datatype map, notably ``xsd:date``, which exported
    ``birthDate``/``date`` values use: pass ``ignore_unsupported_datatypes=True`` to check the
    ontology merged with exported data (those literals are then skipped). The default stays
    strict so that the ontology itself cannot slip one in unnoticed.
    """
    java = owlready2.JAVA_EXE
    if shutil.which(java) is None:
        raise OntologyError(
            f"Java executable {java!r} not found; HermiT needs a Java runtime: install a JDK 17 "
            "(e.g. `apt-get install openjdk-17-jdk-headless`) and put `java` on PATH"
        )
    ntriples, ontology_iri = _to_ntriples(path)
    # A private in-memory quadstore: owlready2's default_world is process-global and would
    # accumulate every file checked.
    world = owlready2.World()
    try:
        onto = world.get_ontology(ontology_iri).load(
            fileobj=io.BytesIO(ntriples), format="ntriples"
        )
        classes = len(list(onto.classes()))
        object_properties = len(list(onto.object_properties()))
        datatype_properties = len(list(onto.data_properties()))
        individuals = len(list(onto.individuals()))
        consistent, error, elapsed = _run_hermit(onto, ignore_unsupported_datatypes)
        unsatisfiable = (
            tuple(
                sorted(
                    iri
                    for iri in (cls.iri for cls in world.inconsistent_classes())
                    if iri != _OWL_NOTHING
                )
            )
            if consistent
            else ()
        )
    finally:
        world.close()
    return ConsistencyReport(
        path=path,
        consistent=consistent,
        classes=classes,
        object_properties=object_properties,
        datatype_properties=datatype_properties,
        individuals=individuals,
        inconsistent_classes=unsatisfiable,
        error=error,
        elapsed_seconds=elapsed,
    )


def _to_ntriples(path: Path) -> tuple[bytes, str]:
    """Turtle -> N-Triples bytes plus the ontology IRI (owlready2 does not read Turtle)."""
    graph = rdflib.Graph()
    try:
        graph.parse(path, format="turtle")
    except (OSError, SyntaxError, ValueError) as exc:
        # rdflib raises BadSyntax (a SyntaxError) on malformed Turtle.
        raise OntologyError(f"cannot read ontology {path}: {exc}") from exc
    iris = sorted(
        str(s) for s in graph.subjects(RDF.type, OWL.Ontology) if isinstance(s, rdflib.URIRef)
    )
    if len(iris) != 1:
        raise OntologyError(f"{path} must declare exactly one named owl:Ontology, found {iris}")
    return graph.serialize(format="nt", encoding="utf-8"), iris[0]


def _run_hermit(onto: object, ignore_unsupported_datatypes: bool) -> tuple[bool, str | None, float]:
    """Run HermiT; return (consistent, error text, seconds)."""
    start = time.perf_counter()
    try:
        owlready2.sync_reasoner_hermit(
            onto,
            infer_property_values=False,
            debug=0,
            ignore_unsupported_datatypes=ignore_unsupported_datatypes,
        )
    except owlready2.OwlReadyInconsistentOntologyError as exc:
        # owlready2 raises this bare; HermiT's own message is on the CalledProcessError it
        # was raised while handling.
        cause = exc.__context__
        _remove_input_file(cause)
        return False, _hermit_message(cause), time.perf_counter() - start
    except owlready2.OwlReadyJavaError as exc:
        _remove_input_file(exc.__context__)
        raise OntologyError(f"HermiT failed: {exc}") from exc
    except FileNotFoundError as exc:
        # Java vanished between the PATH check and the run.
        raise OntologyError(
            f"cannot start Java for HermiT ({exc}); install a JDK 17 and put `java` on PATH"
        ) from exc
    return True, None, time.perf_counter() - start


def _hermit_message(cause: BaseException | None) -> str:
    """The exception line of HermiT's output (the Java stack trace below it says nothing more)."""
    output = getattr(cause, "output", None)
    if not isinstance(output, bytes) or not output.strip():
        return "HermiT reported an inconsistent ontology"
    first = output.decode("utf-8", "replace").strip().splitlines()[0]
    return first.removeprefix('Exception in thread "main" ').strip()


def _remove_input_file(cause: BaseException | None) -> None:
    """Delete the N-Triples file owlready2 handed HermiT: on failure owlready2 leaves it behind.

    Its name is the ``file:///<path>`` argument of the failed command.
    """
    if not isinstance(cause, subprocess.CalledProcessError):
        return
    args = cause.cmd if isinstance(cause.cmd, list | tuple) else [cause.cmd]
    for arg in map(str, args):
        if not arg.startswith("file:///"):
            continue
        name = arg.removeprefix("file:///")
        # owlready2 writes file:/// + the path, so POSIX paths come out with four slashes.
        tmp = Path(name if os.name == "nt" else "/" + name.lstrip("/"))
        # Only ever delete owlready2's own temp file, never whatever else a command pointed at.
        if tmp.parent == Path(tempfile.gettempdir()) and tmp.name.startswith("tmp"):
            tmp.unlink(missing_ok=True)
