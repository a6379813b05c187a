"""Write the GraphQL schema (SDL) to docs/graphql-schema.graphql: `python -m
lekiwi_fleet_server.graphql.export [path]`. A test fails when the file drifts from the code."""

import sys
from pathlib import Path

from lekiwi_fleet_server.graphql.schema import build_schema


def schema_sdl() -> str:
    """Return the schema's SDL text as exported."""
    return build_schema().as_str() + '\n'


def main(argv: list[str]) -> int:
    """Write the SDL to the path given (default: the repository's docs/)."""
    default = Path(__file__).resolve().parents[4] / 'docs' / 'graphql-schema.graphql'
    path = Path(argv[0]) if argv else default
    path.write_text(schema_sdl())
    print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
