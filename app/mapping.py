"""The mapping engine of this process: the packaged embedding models over the graph's vector
indexes, and the chat model re-rank when settings configure one."""

from __future__ import annotations

from app.settings import Settings
from graph.connection import Driver
from nlp.llm_rerank import LlmConfig, LlmReranker
from nlp.mapping import MappingEngine
from nlp.semantic import SemanticSearch


def llm_reranker(settings: Settings) -> LlmReranker | None:
    m = settings.mapping
    if m.llm_provider is None or not m.llm_model:
        return None
    config = LlmConfig(
        provider=m.llm_provider,
        model=m.llm_model,
        base_url=m.llm_base_url,
        api_key=m.llm_api_key.get_secret_value() if m.llm_api_key else None,
        timeout_s=m.llm_timeout_s,
    )
    return LlmReranker.from_config(config)


def mapping_engine(
    settings: Settings, driver: Driver, *, semantic: SemanticSearch | None = None
) -> MappingEngine:
    database = settings.neo4j.database
    return MappingEngine(
        driver,
        semantic=semantic or SemanticSearch(driver, database=database),
        llm=llm_reranker(settings),
        database=database,
    )
