"""A GraphQL query's cost, computed before it runs: every field costs 1, times the list sizes
asked for on the way to it (a field's `first` or `limit` argument: the literal given, the
largest allowed for a variable, else the argument's default), so a query cannot ask for
millions of rows by nesting lists. Works on graphql-core's AST and schema; no I/O.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationRule,
    get_named_type,
)

SIZE_ARGUMENTS = ('first', 'limit')
MAX_SIZE = 1000


def _size(node: FieldNode, definition: GraphQLField | None) -> int:
    if definition is None:
        return 1
    for name in SIZE_ARGUMENTS:
        if name not in definition.args:
            continue
        given = next((a.value for a in node.arguments or () if a.name.value == name), None)
        if isinstance(given, IntValueNode):
            return max(1, min(MAX_SIZE, int(given.value)))
        if given is not None:
            return MAX_SIZE  # a variable: assume the worst
        argument = definition.args[name]
        default = argument.default_value
        if not isinstance(default, int) and argument.ast_node is not None \
                and isinstance(argument.ast_node.default_value, IntValueNode):
            default = int(argument.ast_node.default_value.value)  # a schema built from SDL
        return default if isinstance(default, int) and default > 0 else MAX_SIZE
    return 1


def selection_cost(selection_set: SelectionSetNode | None, parent: Any,
                   fragments: dict[str, FragmentDefinitionNode], schema: GraphQLSchema,
                   multiplier: int, seen: frozenset[str] = frozenset()) -> int:
    """Return the cost of a selection set on `parent` (a type) repeated `multiplier` times."""
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            fields = parent.fields if isinstance(parent, GraphQLObjectType) else {}
            definition = fields.get(selection.name.value)
            total += multiplier
            if definition is not None and selection.selection_set is not None:
                total += selection_cost(selection.selection_set,
                                        get_named_type(definition.type), fragments, schema,
                                        multiplier * _size(selection, definition), seen)
        elif isinstance(selection, InlineFragmentNode):
            on = (schema.get_type(selection.type_condition.name.value)
                  if selection.type_condition else parent)
            total += selection_cost(selection.selection_set, on, fragments, schema,
                                    multiplier, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if name in seen or fragment is None:
                continue  # cycles and unknown fragments are other rules' errors
            total += selection_cost(fragment.selection_set,
                                    schema.get_type(fragment.type_condition.name.value),
                                    fragments, schema, multiplier, seen | {name})
    return total


def operation_cost(node: OperationDefinitionNode, schema: GraphQLSchema,
                   fragments: dict[str, FragmentDefinitionNode]) -> int:
    """Return the cost of one operation of a document."""
    root = {OperationType.QUERY: schema.query_type,
            OperationType.MUTATION: schema.mutation_type,
            OperationType.SUBSCRIPTION: schema.subscription_type}[node.operation]
    return selection_cost(node.selection_set, root, fragments, schema, 1)


def cost_limit_rule(max_cost: int) -> type[ValidationRule]:
    """Return a validation rule that refuses operations costing more than `max_cost`."""

    class CostLimit(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode,
                                       *_args: Any) -> None:
            fragments = {d.name.value: d for d in self.context.document.definitions
                         if isinstance(d, FragmentDefinitionNode)}
            cost = operation_cost(node, self.context.schema, fragments)
            if cost > max_cost:
                self.report_error(GraphQLError(
                    f'query cost {cost} exceeds the limit of {max_cost}: ask for fewer items '
                    '(first/limit) or fewer nested lists', node))

    return CostLimit
