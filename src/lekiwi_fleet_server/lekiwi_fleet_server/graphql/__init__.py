"""The GraphQL API (strawberry-graphql) over the read models REST uses: /api/v1/graphql."""
