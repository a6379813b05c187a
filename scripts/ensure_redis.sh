#!/usr/bin/env bash
# Make sure Debian's redis-server binary is installed (tests start their own throw-away
# instances on loopback with free ports; no system service is started). Idempotent.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then
  exit 0
fi
echo "redis: installing Debian's redis-server package" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq redis-server >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
# The package enables a system service on port 6379; the tests do not need it.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
