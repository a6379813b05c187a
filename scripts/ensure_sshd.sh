#!/usr/bin/env bash
# Install Debian's OpenSSH server when it is missing: the legacy adapter's tests and benchmark
# start their own sshd on loopback ports (never the system's service, which stays stopped).
set -euo pipefail
if [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null 2>&1; then
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "sshd: no apt-get; legacy tests will skip" >&2; exit 0; }
echo "sshd: installing Debian's openssh-server" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101: the package must not start the system's sshd on port 22.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
(apt-get install -y -qq openssh-server >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq openssh-server >/dev/null; }) \
  || echo "sshd: openssh-server could not be installed; legacy tests will skip" >&2
if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
