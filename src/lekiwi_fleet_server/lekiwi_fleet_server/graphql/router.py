"""Mount the GraphQL schema at /api/v1/graphql with who-is-asking in its context.

HTTP and WebSocket (graphql-transport-ws) requests authenticate as REST does (`principal`:
bearer token, else the login cookie, with CSRF on POST); strawberry refuses WebSockets from
other origins. No GraphiQL: it would load from a CDN.
"""

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from strawberry.fastapi import GraphQLRouter

from lekiwi_fleet_server.api.deps import principal
from lekiwi_fleet_server.graphql.schema import build_schema
from lekiwi_fleet_server.settings import Settings

PATH = '/api/v1/graphql'


async def graphql_context(connection: HTTPConnection) -> dict[str, object]:
    """Return the services and the operator (None when unauthenticated) of a request."""
    services = connection.app.state.services
    header = connection.headers.get('authorization', '')
    bearer = header[7:].strip() if header.lower().startswith('bearer ') else None
    method = connection.scope.get('method', 'GET')
    operator = await run_in_threadpool(principal, connection, services,
                                       connection.app.state.accounts, bearer, method=method)
    return {'services': services, 'operator': operator}


def mount_graphql(app: FastAPI, settings: Settings) -> None:
    """Add the GraphQL endpoint to the app."""
    schema = build_schema(max_depth=settings.graphql_max_depth,
                          max_cost=settings.graphql_max_cost)
    router = GraphQLRouter(schema, path=PATH, graphql_ide=None, allow_queries_via_get=False,
                           context_getter=graphql_context)
    # Not in the REST OpenAPI: GraphQL has a schema of its own (docs/graphql-schema.graphql).
    app.include_router(router, tags=['graphql'], include_in_schema=False)
