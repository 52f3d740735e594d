"""The GraphQL schema: queries, mutations and subscriptions of every module, plus the safety
rules that apply to every request.

Each concern keeps its operations in its own module (``resolvers/mpi.py``, ...) as small
``@strawberry.type`` classes; :func:`build_schema` merges them into the root types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.tools import merge_types

from access.changes import ChangeFeedError
from access.policy import AccessDeniedError
from resolvers import (
    changes,
    consent,
    drugs,
    mapping,
    mpi,
    portal,
    readings,
    shadow,
    terminology,
)
from resolvers.context import Context, Info, in_thread
from resolvers.cost import cost_limit_rule
from resolvers.types import (
    AccessDenied,
    Connection,
    Edge,
    PageInfo,
    Patient,
    PatientMerged,
    PatientNotFound,
    PatientResult,
    decode_cursor,
    encode_cursor,
    load_person,
)

#: Exceptions whose message is safe to show: they describe the request, never patient data.
_EXPECTED = (AccessDeniedError, ValueError, ChangeFeedError)  # drugs' errors are ValueErrors


def _should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None:
        return False  # validation errors from graphql-core describe the query itself
    return not isinstance(original, _EXPECTED)


@strawberry.type
class PatientQuery:
    @strawberry.field(
        description="One patient's virtual EHR by person id. Without a consent covering you "
        "the answer is AccessDenied, the same whether or not the patient exists."
    )
    async def patient(self, info: Info, id: strawberry.ID) -> PatientResult:
        denied: AccessDeniedError | None = None
        try:
            row = await load_person(info, str(id))
        except AccessDeniedError as e:
            denied, row = e, None
        if row is None:
            try:
                merged = await in_thread(info.context.access.merged_into, str(id))
            except AccessDeniedError as e:
                return AccessDenied(message=str(e))
            if merged is not None:
                return PatientMerged(id=id, merged_into=strawberry.ID(merged))
            if denied is not None:
                return AccessDenied(message=str(denied))
            return PatientNotFound(id=id)
        return Patient.from_row(row)

    @strawberry.field(description="Patients, optionally matching a name or national id.")
    async def patients(
        self,
        info: Info,
        search: str | None = None,
        first: Annotated[int, strawberry.argument(description="page size, 1-100")] = 20,
        after: str | None = None,
    ) -> Connection[Patient]:
        if not 1 <= first <= 100:
            raise ValueError("first must be between 1 and 100")
        skip = int(decode_cursor(after, 1)[0]) + 1 if after else 0
        rows, total = await in_thread(info.context.access.search_persons, search, skip, first)
        loader = info.context.loaders.persons()
        edges = []
        for i, row in enumerate(rows):
            loader.prime(row["uid"], row)
            edges.append(Edge(node=Patient.from_row(row), cursor=encode_cursor(str(skip + i))))
        return Connection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=skip + len(rows) < total,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            total_count=total,
        )


#: The root types' parts, one class per module; a module adds its classes here.
QUERIES: tuple[type, ...] = (
    PatientQuery,
    mpi.IdentityQuery,
    *changes.QUERIES,
    *terminology.QUERIES,
    *mapping.QUERIES,
    *shadow.QUERIES,
    *drugs.QUERIES,
    *consent.QUERIES,
)
MUTATIONS: tuple[type, ...] = (
    mpi.IdentityMutation,
    *portal.MUTATIONS,
    *changes.MUTATIONS,
    *readings.MUTATIONS,
    *terminology.MUTATIONS,
    *mapping.MUTATIONS,
    *shadow.MUTATIONS,
    *consent.MUTATIONS,
)
SUBSCRIPTIONS: tuple[type, ...] = (*changes.SUBSCRIPTIONS, *shadow.SUBSCRIPTIONS)


class AuditFlush(SchemaExtension):
    """Write the operation's audit events once it has run (one transaction per request)."""

    async def on_execute(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            context = self.execution_context.context
            audit = context.access.guard.audit if isinstance(context, Context) else None
            if audit is not None and audit.pending:  # no thread hop for requests that read none
                await in_thread(context.access.flush_audit)


def build_schema(
    *,
    max_depth: int = 10,
    max_tokens: int = 2000,
    max_aliases: int = 15,
    max_cost: int = 250_000,
    production: bool = False,
) -> strawberry.Schema:
    # Factories, so every request gets fresh extension instances.
    extensions: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        lambda: QueryDepthLimiter(max_depth=max_depth),
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: MaxAliasesLimiter(max_alias_count=max_aliases),
        lambda: AddValidationRules([cost_limit_rule(max_cost)]),
        lambda: MaskErrors(should_mask_error=_should_mask),
        AuditFlush,
    ]
    if production:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=merge_types("Query", QUERIES),
        mutation=merge_types("Mutation", MUTATIONS) if MUTATIONS else None,
        subscription=merge_types("Subscription", SUBSCRIPTIONS) if SUBSCRIPTIONS else None,
        extensions=extensions,
    )
