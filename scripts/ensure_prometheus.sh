#!/usr/bin/env bash
# Install Debian's prometheus package (for promtool: the monitoring tests check the scrape
# configuration, the rules and the dashboards' queries with it) when promtool is missing.
# Idempotent; prints promtool's path. Only the tool is used: the service is not started.
set -euo pipefail
if ! command -v promtool >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "prometheus: no promtool and no apt-get" >&2
    exit 1
  fi
  echo "prometheus: installing Debian's prometheus package (promtool)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Other set-up steps may hold the dpkg lock: wait for it rather than fail.
  apt=(apt-get -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends)
  { "${apt[@]}" install prometheus >/dev/null 2>&1 \
      || { apt-get -qq -o DPkg::Lock::Timeout=600 update && "${apt[@]}" install prometheus; }
  } >&2
  # The package enables its service; the tests need only promtool, so leave it stopped.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
command -v promtool
