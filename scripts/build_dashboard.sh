#!/usr/bin/env bash
# Build the web dashboard from src/lekiwi_fleet_server/web into the server package's
# dashboard_dist/ (served at /ui/). npm ci installs the exact versions of package-lock.json,
# again only when the lock changed. Installs Debian's nodejs/npm when they are missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
web="$root/src/lekiwi_fleet_server/web"

if ! command -v npm >/dev/null 2>&1; then
  echo "dashboard: installing Debian's nodejs and npm" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq nodejs npm >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
fi
cd "$web"
want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.lekiwi-lock.sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "dashboard: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi
npx --no-install vite build --logLevel warn >&2
test -f "$root/src/lekiwi_fleet_server/lekiwi_fleet_server/dashboard_dist/index.html"
