"""The GraphQL cost estimate: sizes multiply through nested lists, fragments, variables."""

from __future__ import annotations

import pytest
from graphql import FragmentDefinitionNode, OperationDefinitionNode, build_schema, parse

from lekiwi_fleet_server.graphql.cost import MAX_SIZE, operation_cost
from lekiwi_fleet_server.graphql.export import schema_sdl


@pytest.fixture(scope='module')
def schema():  # type: ignore[no-untyped-def]
    return build_schema(schema_sdl())


def cost(schema, text: str) -> int:  # type: ignore[no-untyped-def]
    document = parse(text)
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    return operation_cost(operation, schema, fragments)


def test_sizes_multiply_through_nested_lists(schema) -> None:  # type: ignore[no-untyped-def]
    assert cost(schema, '{ fleetSummary { total } }') == 2
    # robots (1) + edges (10) + node (10) + teleopSessions (10) + sessionId (10 x 5)
    assert cost(schema, '{ robots(first: 10) { edges { node { teleopSessions(first: 5) '
                        '{ sessionId } } } } }') == 1 + 10 + 10 + 10 + 50
    # Defaults count when no size is given: robots 100, teleopSessions 20.
    assert cost(schema, '{ robots { edges { node { teleopSessions { sessionId } } } } }') \
        == 1 + 100 + 100 + 100 + 100 * 20


def test_variables_count_as_the_largest_size_and_fragments_are_followed(
        schema) -> None:  # type: ignore[no-untyped-def]
    assert cost(schema, 'query($n: Int!) { robots(first: $n) { totalCount } }') == 1 + MAX_SIZE
    with_fragment = '''{ robots(first: 3) { ...page } }
        fragment page on RobotConnection { edges { node { robotId } } }'''
    assert cost(schema, with_fragment) == 1 + 3 + 3 + 3
    cyclic = '''{ robots(first: 3) { ...a } } fragment a on RobotConnection { ...a totalCount }'''
    assert cost(schema, cyclic) == 1 + 3
