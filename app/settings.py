"""One typed settings object for the whole process, built once at the edge and passed down."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Neo4jSettings(BaseModel):
    """Where the graph lives. No ``uri`` means: start the embedded Neo4j ourselves."""

    uri: str | None = None
    user: str = "neo4j"
    password: SecretStr | None = None
    database: str = "neo4j"
    # Embedded server only.
    home: Path = REPO_ROOT / ".medshadow" / "neo4j"
    port: int = 7687
    heap: str = "1g"
    pagecache: str = "512m"
    jars: Path = REPO_ROOT / "tools" / "neo4j" / "target"
    java: str = "java"
    start_timeout_s: float = 120.0

    @property
    def password_value(self) -> str | None:
        """The password in clear, for the driver only (never log it)."""
        return self.password.get_secret_value() if self.password else None


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    # Static bearer tokens for development and machine clients (device gateways, integration
    # engines): token -> "role[:subject][@organisation]". Refused in production mode, where every
    # principal presents a signed JWT (``auth``). A request without a token acts as
    # ``anonymous_role`` (production: always "none").
    tokens: dict[str, str] = Field(default_factory=dict)
    anonymous_role: Literal["clinician", "none"] = "clinician"
    max_depth: int = 10
    max_tokens: int = 2000
    max_aliases: int = 15
    #: Estimated objects a query may reach (resolvers/cost.py): lists multiply what they hold.
    max_cost: int = 250_000
    production: bool = False


class AuthSettings(BaseModel):
    """Bearer tokens and consent (``MEDSHADOW_AUTH__*``).

    The built-in issuer signs ES256 JWTs with a key kept in ``<data_dir>/auth`` (created on
    first use, readable by its owner only); its public key is served at
    ``/.well-known/jwks.json``. For production, name the organisation's OpenID Connect issuer
    and its JWKS URL: tokens of that issuer are verified against its published keys and mapped
    to principals through the claims named below.
    """

    issuer: str = "medshadow"
    audience: str = "medshadow"
    #: Lifetime of tokens the built-in issuer signs (users, apps).
    token_ttl_s: int = Field(default=3600, gt=0)
    app_token_ttl_s: int = Field(default=3600, gt=0)
    auth_code_ttl_s: int = Field(default=120, gt=0)
    leeway_s: int = Field(default=30, ge=0)
    #: An external OpenID Connect issuer (its ``iss``) and the URL of its JSON Web Key Set.
    oidc_issuer: str | None = None
    oidc_jwks_url: str | None = None
    oidc_audience: str | None = None
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    #: Claims of external tokens: role, organisation (a domain uid), the patient's person uid.
    role_claim: str = "medshadow_role"
    organisation_claim: str = "medshadow_org"
    patient_claim: str = "patient"
    #: ``opt-out``: a practitioner may read for treatment unless the patient restricted it (every
    #: access logged and shown to the patient); ``opt-in``: only with a care relationship (the
    #: practitioner's organisation holds a record of the patient) or an explicit grant.
    consent_model: Literal["opt-out", "opt-in"] = "opt-out"
    break_glass_minutes: int = Field(default=60, gt=0, le=24 * 60)
    #: The UI's "sign in as" for the embedded demo (never in production).
    dev_login: bool = True
    #: Record every read and write of personal data (``AuditEvent``).
    audit: bool = True


class LoadSettings(BaseModel):
    batch_size: int = 5000
    include_claims: bool = False


class NotifySettings(BaseModel):
    """The change-feed dispatcher of the web process (``app/notify.py``)."""

    enabled: bool = True
    #: How often the outbox is read when no in-process writer wakes the dispatcher.
    poll_interval_s: float = 0.5
    #: Events read per poll; webhook deliveries sent per webhook per round.
    batch_size: int = 500
    #: Events a slow subscriber may have queued before it is disconnected (it can resume with
    #: its last cursor).
    subscriber_queue: int = 1000
    #: A gap in the sequence is a transaction still committing; past this it is skipped.
    gap_grace_s: float = 5.0
    #: How often events of records linked since are given their Person.
    attach_interval_s: float = 5.0
    webhook_timeout_s: float = 10.0
    webhook_concurrency: int = 8
    #: How long a dispatcher keeps a webhook to itself (replicas of the app take turns); at
    #: least three request timeouts.
    webhook_lease_s: float = 60.0
    #: Retry delay: min(cap, base * 2**(attempt-1)), then up to ``jitter`` of it taken off.
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    backoff_jitter: float = 0.5
    #: How old a signed timestamp a receiver accepts (``verify_signature``).
    signature_tolerance_s: float = 300.0


class MpiSettings(BaseModel):
    """The master patient index: match probabilities that link automatically / need review."""

    auto_threshold: float = Field(default=0.99, ge=0.0, le=1.0)
    review_threshold: float = Field(default=0.1, ge=0.0, le=1.0)
    #: Link records to persons right after each load (off: run ``medshadow mpi link``).
    link_on_load: bool = True


class MappingSettings(BaseModel):
    """The mapping workbench (``MEDSHADOW_MAPPING__*``). Offline by default; an LLM re-rank
    runs only when ``llm_provider`` and ``llm_model`` name a chat model the user runs (e.g.
    ``openai`` with ``llm_base_url=http://127.0.0.1:11434/v1`` for a local Ollama)."""

    candidates: int = Field(default=10, ge=1, le=50)
    llm_provider: Literal["openai", "ollama"] | None = None
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = 60.0


class ShadowSettings(BaseModel):
    """The digital shadow (``MEDSHADOW_SHADOW__*``)."""

    #: The shadow's "now" (ISO date or date-time, UTC). None: the wall clock. The demo sets its
    #: sample's reference date, so its windows ("last 24 h") and silent-monitor checks look at
    #: the sample's days rather than at today's empty ones.
    clock: datetime | None = None
    #: Recompute the shadow of every person the change feed reports as changed (alerts, data
    #: requests, scores), in the web process.
    watch: bool = True
    #: Persons recomputed per transaction batch when many changed at once.
    batch_size: int = Field(default=250, ge=1)
    #: How often the web process re-checks for silent monitors (no event announces silence).
    silence_check_interval_s: float = Field(default=300.0, gt=0)

    @property
    def clock_epoch(self) -> int | None:
        if self.clock is None:
            return None
        clock = self.clock if self.clock.tzinfo else self.clock.replace(tzinfo=UTC)
        return int(clock.timestamp())


class DemoSettings(BaseModel):
    population: int = 40
    seed: int = 2026
    reference_date: str = "20260101"
    #: Perturb each clinic's copy of the demographics (typos, maiden names, missing national
    #: ids, moves, twins) so the master patient index has real work to do.
    perturb: bool = True
    #: How many clinics code diagnoses and labs with their own local code lists (Russian or
    #: abbreviated names; ``loaders/localize.py``) for the mapping workbench to map.
    local_clinics: int = 1


class Settings(BaseSettings):
    """``MEDSHADOW_*`` environment variables; nested ones use ``__`` (``MEDSHADOW_NEO4J__URI``)."""

    model_config = SettingsConfigDict(
        env_prefix="MEDSHADOW_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = REPO_ROOT / ".medshadow"
    neo4j: Neo4jSettings = Field(default_factory=Neo4jSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    load: LoadSettings = Field(default_factory=LoadSettings)
    demo: DemoSettings = Field(default_factory=DemoSettings)
    mpi: MpiSettings = Field(default_factory=MpiSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    mapping: MappingSettings = Field(default_factory=MappingSettings)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
