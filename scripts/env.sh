# Source me: the project's ROS 2 environment (venv, ament and CMake prefixes, built workspace).
_lekiwi_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The setup scripts read unset variables: relax `set -u` while sourcing them.
case $- in *u*) _lekiwi_nounset=1; set +u ;; *) _lekiwi_nounset= ;; esac
# shellcheck disable=SC1091
source "$_lekiwi_root/.venv/bin/activate"
export AMENT_PREFIX_PATH="$_lekiwi_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$_lekiwi_root/.venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
# Tests and demos talk over loopback only and stay off other machines' DDS graphs.
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
if [ -f "$_lekiwi_root/install/setup.bash" ]; then
  # shellcheck disable=SC1091
  source "$_lekiwi_root/install/setup.bash"
fi
[ -n "$_lekiwi_nounset" ] && set -u
unset _lekiwi_root _lekiwi_nounset
