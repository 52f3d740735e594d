"""Composition root of the web process: ``create_app(settings)`` owns the driver's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from strawberry.asgi import GraphQL
from strawberry.types.unset import UnsetType

from access.consent import Model
from access.policy import Principal
from access.tokens import Authenticator
from app.auth import auth_routes, authenticator
from app.ingest import ingest_endpoint
from app.mapping import mapping_engine
from app.notify import Notifier
from app.settings import Settings
from app.shadow_watch import ShadowWatcher
from drugs.service import DrugSafety
from graph.connection import Driver, open_driver, ping
from graph.schema import ensure_schema
from nlp.semantic import SemanticSearch
from resolvers.context import Context, in_thread
from resolvers.schema import build_schema
from shadow.service import ShadowService

WEB_DIR = Path(__file__).resolve().parent.parent / "web" / "static"


class MedshadowGraphQL(GraphQL[Context, None]):
    def __init__(self, settings: Settings, auth: Authenticator, **kwargs: Any) -> None:
        api = settings.api
        schema = build_schema(
            max_depth=api.max_depth,
            max_tokens=api.max_tokens,
            max_aliases=api.max_aliases,
            max_cost=api.max_cost,
            production=api.production,
        )
        super().__init__(schema, graphql_ide=None if api.production else "graphiql", **kwargs)
        self.settings = settings
        self.auth = auth

    async def get_context(self, request: HTTPConnection, response: Any = None) -> Context:
        state = request.app.state
        principal = self.auth.principal(_bearer(request.headers.get("authorization", "")))
        return self._context(
            state.driver,
            principal,
            feed=getattr(state, "notifier", None),
            semantic=getattr(state, "semantic", None),
            mapper=getattr(state, "mapper", None),
            shadow=getattr(state, "shadow", None),
            drugs=getattr(state, "drugs", None),
        )

    def _context(self, driver: Driver, principal: Principal, **services: Any) -> Context:
        settings = self.settings
        return Context.for_principal(
            driver,
            principal,
            database=settings.neo4j.database,
            shadow_clock=settings.shadow.clock_epoch,
            consent_model=settings.auth.consent_model,
            audit=settings.auth.audit,
            break_glass_minutes=settings.auth.break_glass_minutes,
            **services,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """graphql-transport-ws: a token in the ``connection_init`` payload (``Authorization``,
        as browsers cannot set websocket headers) replaces the upgrade request's header."""
        params = {str(k).lower(): v for k, v in (context.connection_params or {}).items()}
        value = params.get("authorization")
        if isinstance(value, str):
            fresh = self._context(
                context.access.reader.driver,
                self.auth.principal(_bearer(value)),
                feed=context.feed,
                semantic=context.semantic,
                mapper=context.mapper,
                shadow=context.shadow,
                drugs=context.drugs,
            )
            context.access, context.loaders = fresh.access, fresh.loaders
        return await super().on_ws_connect(context)


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def create_app(settings: Settings, *, driver: Driver | None = None) -> Starlette:
    """Build the ASGI app. Without an injected driver, the lifespan opens one from settings."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = driver is None
        if driver is None:
            if settings.neo4j.uri is None:
                raise RuntimeError("create_app needs settings.neo4j.uri (the CLI resolves it)")
            app.state.driver = open_driver(
                settings.neo4j.uri, settings.neo4j.user, settings.neo4j.password_value
            )
        else:
            app.state.driver = driver
        ensure_schema(app.state.driver, database=settings.neo4j.database)
        notifier = None
        if settings.notify.enabled:
            notifier = Notifier(
                app.state.driver,
                settings.notify,
                database=settings.neo4j.database,
                consent_model=Model(settings.auth.consent_model),
            )
            await notifier.start()
        app.state.notifier = notifier
        app.state.shadow = ShadowService(app.state.driver, database=settings.neo4j.database)
        # drug safety: the drug dictionary loads on the first check (about a second)
        app.state.drugs = DrugSafety(
            app.state.driver, database=settings.neo4j.database, shadow=app.state.shadow
        )
        watcher = None
        if notifier is not None and settings.shadow.watch:
            watcher = ShadowWatcher(notifier, app.state.shadow, settings.shadow)
            await watcher.start()
        app.state.shadow_watcher = watcher
        # semantic concept search: the embedding models load on the first semantic query
        app.state.semantic = SemanticSearch(app.state.driver, database=settings.neo4j.database)
        # the mapping workbench's engine (and the chat model re-rank, when configured)
        app.state.mapper = mapping_engine(settings, app.state.driver, semantic=app.state.semantic)
        try:
            yield
        finally:
            if watcher is not None:
                await watcher.stop()
            if notifier is not None:
                await notifier.stop()
            if owned:
                app.state.driver.close()

    async def health(request: Request) -> Response:
        error = await in_thread(ping, request.app.state.driver)
        if error is not None:
            return JSONResponse({"status": "unavailable", "neo4j": error}, 503)
        return JSONResponse({"status": "ok", "neo4j": "up"})

    async def index(request: Request) -> Response:
        return RedirectResponse("/ui/")

    auth = authenticator(settings)  # refuses insecure production settings before serving
    graphql = MedshadowGraphQL(settings, auth)
    routes = [
        *auth_routes(settings),
        Route("/", index),
        Route("/health", health),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),  # subscriptions (graphql-transport-ws)
        Route("/ingest/readings", ingest_endpoint(settings), methods=["POST"]),
        Mount("/ui", StaticFiles(directory=WEB_DIR, html=True), name="ui"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.auth = auth
    return app
