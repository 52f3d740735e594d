"""A query cost limit: a static estimate of how many values a query can make the server read.

Each object a query reaches costs 1, times the size of every list it sits in (scalars of an
object already read are free). A list's size is its ``first``
argument (a literal; for a variable, the argument's default: validation runs before variables
are known), and :data:`UNPAGED` for lists without one (a patient's conditions).
Depth, aliases and tokens are limited separately (``resolvers/schema.py``); this catches the
query that stays shallow and short but asks for 100 patients × 500 observations × … .
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
)

#: Assumed size of a list field without a ``first`` argument.
UNPAGED = 20


def _is_list(t: GraphQLOutputType) -> bool:
    while isinstance(t, GraphQLNonNull):
        t = t.of_type
    return isinstance(t, GraphQLList)


def query_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> int:
    root = {
        "query": schema.query_type,
        "mutation": schema.mutation_type,
        "subscription": schema.subscription_type,
    }[operation.operation.value]
    assert root is not None
    return _selection_cost(schema, root, operation.selection_set, fragments, 1, 0)


def _selection_cost(
    schema: GraphQLSchema,
    parent: Any,
    selection: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    multiplier: int,
    depth: int,
) -> int:
    if selection is None or depth > 50:
        return 0
    total = 0
    for node in selection.selections:
        if isinstance(node, FieldNode):
            fields = getattr(parent, "fields", {}) if not is_abstract_type(parent) else {}
            field = fields.get(node.name.value)
            if field is None or is_leaf_type(get_named_type(field.type)):
                continue  # values of an object already read cost nothing more
            total += multiplier
            size = _first(node, field)
            inner = multiplier * (
                size if size is not None else (UNPAGED if _is_list(field.type) else 1)
            )
            total += _selection_cost(
                schema,
                get_named_type(field.type),
                node.selection_set,
                fragments,
                inner,
                depth + 1,
            )
        elif isinstance(node, InlineFragmentNode):
            target = (
                schema.get_type(node.type_condition.name.value) if node.type_condition else parent
            )
            total += _selection_cost(
                schema, target, node.selection_set, fragments, multiplier, depth + 1
            )
        elif isinstance(node, FragmentSpreadNode):
            fragment = fragments.get(node.name.value)
            if fragment is not None:
                target = schema.get_type(fragment.type_condition.name.value)
                total += _selection_cost(
                    schema,
                    target,
                    fragment.selection_set,
                    fragments,
                    multiplier,
                    depth + 1,
                )
    return total


def _first(node: FieldNode, field: Any) -> int | None:
    """The page size a field asks for, when it takes ``first``."""
    if "first" not in field.args:
        return None
    for arg in node.arguments or ():
        if arg.name.value != "first":
            continue
        if isinstance(arg.value, IntValueNode):
            return max(int(arg.value.value), 0)
    default = field.args["first"].default_value
    return default if isinstance(default, int) else UNPAGED


def cost_limit_rule(max_cost: int) -> type[ValidationRule]:
    """A validation rule rejecting operations estimated above ``max_cost``."""

    class CostLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self._fragments = {
                d.name.value: d
                for d in context.document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            cost = query_cost(self.context.schema, node, self._fragments)
            if cost > max_cost:
                self.report_error(
                    GraphQLError(
                        f"query cost {cost} exceeds the limit of {max_cost}: ask for smaller "
                        "pages (first) or fewer nested lists",
                        node,
                    )
                )

    return CostLimit
