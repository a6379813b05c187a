#!/usr/bin/env bash
# Install Debian's chromium for the dashboard's browser tests when it is missing (idempotent).
# Playwright drives it through executable_path; it never downloads a browser of its own.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium: /usr/bin/chromium missing and no apt-get to install it" >&2
  exit 1
fi
echo "chromium: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq chromium >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
[ -x /usr/bin/chromium ]
