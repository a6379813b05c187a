#!/usr/bin/env bash
# Print the PostgreSQL URL the tests use. Without LEKIWI_TEST_DATABASE_URL, install
# PostgreSQL from Debian's packages when it is missing, start the local cluster (loopback
# only) and create a test role that may create databases. Its password is kept per user, not per
# checkout, so clones tested on the same machine (CI runs a clean clone) share the role.
set -euo pipefail
if [ -n "${LEKIWI_TEST_DATABASE_URL:-}" ]; then
  echo "$LEKIWI_TEST_DATABASE_URL"
  exit 0
fi
root=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  echo "postgres: installing Debian's postgresql package" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi

cluster_line=$(pg_lsclusters --no-header | head -n 1)
if [ -z "$cluster_line" ]; then
  ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  pg_createcluster "$ver" main >&2
  cluster_line=$(pg_lsclusters --no-header | head -n 1)
fi
read -r ver cluster port status _ <<<"$cluster_line"
if [ "$status" != "online" ]; then
  pg_ctlcluster "$ver" "$cluster" start >&2
fi

state_dir="${XDG_STATE_HOME:-$HOME/.local/state}/lekiwi-fleet"
mkdir -p "$state_dir"
pw_file="$state_dir/postgres-test-password"
if [ ! -s "$pw_file" ] && [ -s "$root/.state/postgres-test-password" ]; then
  cp "$root/.state/postgres-test-password" "$pw_file"  # the role's password until now
fi
if [ ! -s "$pw_file" ]; then
  (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$pw_file")
fi
pw=$(cat "$pw_file")

as_postgres() { runuser -u postgres -- "$@"; }
as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 -v pw="$pw" >/dev/null <<'SQL'
SELECT format('CREATE ROLE lekiwi_test LOGIN CREATEDB PASSWORD %L', :'pw')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lekiwi_test') \gexec
SELECT format('ALTER ROLE lekiwi_test LOGIN CREATEDB PASSWORD %L', :'pw') \gexec
SELECT 'CREATE DATABASE lekiwi_test OWNER lekiwi_test'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'lekiwi_test') \gexec
SQL
echo "postgresql+psycopg://lekiwi_test:${pw}@127.0.0.1:${port}/lekiwi_test"
