"""One typed settings object for the whole process, built once at the edge and passed down."""

from __future__ import annotations

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
    # Bearer token -> role. Consent and real identity arrive with the access issue; until then a
    # request without a token acts as ``anonymous_role``.
    tokens: dict[str, str] = Field(default_factory=dict)
    anonymous_role: Literal["clinician", "none"] = "clinician"
    max_depth: int = 10
    max_tokens: int = 2000
    max_aliases: int = 15
    production: bool = False


class LoadSettings(BaseModel):
    batch_size: int = 5000
    include_claims: bool = False


class DemoSettings(BaseModel):
    population: int = 40
    seed: int = 2026
    reference_date: str = "20260101"


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
