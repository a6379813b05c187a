#!/usr/bin/env bash
# make demo: the fleet server on its embedded database (SQLite) plus one simulated LeKiwi robot
# running the real agent nodes; prints the URLs to open. Ctrl-C stops everything.
# LEKIWI_DEMO_ONCE=1 stops as soon as the robot is listed (used by the tests).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/bootstrap.sh
scripts/build_dashboard.sh
# shellcheck disable=SC1091
source scripts/env.sh
if [ ! -f install/lekiwi_agent_ros/share/lekiwi_agent_ros/package.xml ] \
   || [ -n "$(find src -newer install/.built-stamp -print -quit 2>/dev/null)" ]; then
  echo "demo: building the workspace (colcon build)"
  colcon build --event-handlers console_cohesion- summary- >/tmp/lekiwi-demo-build.log 2>&1 \
    || { cat /tmp/lekiwi-demo-build.log; exit 1; }
  touch install/.built-stamp
fi
# shellcheck disable=SC1091
source scripts/env.sh

state=${LEKIWI_DEMO_DIR:-$root/.state/demo}
robot_id=${LEKIWI_DEMO_ROBOT:-kiwi-sim-1}
mkdir -p "$state"
export LEKIWI_DATA_DIR="$state"
export LEKIWI_DATABASE_URL="sqlite:///$state/fleet.db"
export LEKIWI_API_PORT=${LEKIWI_API_PORT:-8080}
export LEKIWI_GATEWAY_PORT=${LEKIWI_GATEWAY_PORT:-9090}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}

if [ ! -f "$state/fleet.db" ]; then
  rm -f "$state/robot-token" "$state/outbox.db"* "$state/demo-password"
fi
if [ ! -s "$state/admin-token" ]; then
  (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$state/admin-token")
fi
export LEKIWI_BOOTSTRAP_ADMIN_TOKEN
LEKIWI_BOOTSTRAP_ADMIN_TOKEN=$(cat "$state/admin-token")

python -m lekiwi_fleet_server migrate >"$state/setup.log" 2>&1 || { cat "$state/setup.log"; exit 1; }
if [ ! -s "$state/robot-token" ]; then
  (umask 077 && python -m lekiwi_fleet_server enrol "$robot_id" --tag demo --tag simulated \
     >"$state/robot-token" 2>>"$state/setup.log")
fi

# A password account for the dashboard (operator role), made once per demo database.
if [ ! -s "$state/demo-password" ]; then
  (umask 077 && od -An -N9 -tx1 /dev/urandom | tr -d ' \n' >"$state/demo-password")
  python -m lekiwi_fleet_server create-account demo --role operator \
    <"$state/demo-password" >>"$state/setup.log" 2>&1 || { cat "$state/setup.log"; exit 1; }
fi
export LEKIWI_DASHBOARD_DIR="$root/src/lekiwi_fleet_server/lekiwi_fleet_server/dashboard_dist"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

python -m lekiwi_fleet_server serve >"$state/server.log" 2>&1 &
pids+=($!)
ready=""
for _ in $(seq 1 150); do
  ready=$(grep -m1 'lekiwi-fleet-server ready' "$state/server.log" || true)
  [ -n "$ready" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$state/server.log"; exit 1; }
  sleep 0.2
done
[ -n "$ready" ] || { echo "demo: the server did not start"; cat "$state/server.log"; exit 1; }
api=$(sed -E 's/.* api=([^ ]+).*/\1/' <<<"$ready")
gateway=$(sed -E 's/.* gateway=([^ ]+).*/\1/' <<<"$ready")

started=$(date +%s.%N)
python -m lekiwi_agent_ros.sim_lekiwi >"$state/sim.log" 2>&1 &
pids+=($!)
python -m lekiwi_agent_ros.agent --ros-args -p robot_id:="$robot_id" \
  -p server_url:="$gateway" -p token_file:="$state/robot-token" \
  -p outbox_path:="$state/outbox.db" >"$state/agent.log" 2>&1 &
pids+=($!)

seen=$(python - "$api" "$robot_id" "$started" <<'PY'
import json, os, sys, time, urllib.request
api, robot, started = sys.argv[1], sys.argv[2], float(sys.argv[3])
request = urllib.request.Request(
    f'{api}/api/v1/robots', headers={'Authorization': 'Bearer '
                                     + os.environ['LEKIWI_BOOTSTRAP_ADMIN_TOKEN']})
deadline = time.time() + 20
while time.time() < deadline:
    try:
        robots = json.load(urllib.request.urlopen(request, timeout=2))
        items = robots['items'] if isinstance(robots, dict) else robots
        if any(r['robot_id'] == robot and r.get('last_heartbeat_at') for r in items):
            print(f'{time.time() - started:.1f}')
            break
    except OSError:
        pass
    time.sleep(0.1)
PY
)
[ -n "$seen" ] || { echo "demo: the robot did not appear"; tail -n 30 "$state/agent.log"; exit 1; }

cat <<EOT

  LeKiwi Fleet demo is running.
  dashboard:          $api/ui/   (log in as demo / $(cat "$state/demo-password"))
  robot $robot_id is listed after ${seen} s:  curl -H "Authorization: Bearer \$(cat $state/admin-token)" $api/api/v1/robots
  API and its docs:   $api/docs
  robot gateway:      $gateway
  admin token file:   $state/admin-token
  logs:               $state/*.log
  Ctrl-C stops the demo.

EOT
[ "${LEKIWI_DEMO_ONCE:-0}" = "1" ] && exit 0
wait
