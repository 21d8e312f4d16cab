#!/usr/bin/env bash
# Local AWS emulators for the tests that run the real SDK over real HTTP (crates/aws/tests):
#   install  make .venv-moto (moto[server]) and .venv-ministack (ministack), pinned, each in its own venv
#   start    start both on free loopback ports; write target/emulators/env with their endpoints
#   stop     stop the processes `start` recorded (by PID, nothing else)
# Then: `source target/emulators/env` and run the tests. scripts/test.sh does all of this itself.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
MINISTACK_VERSION=1.5.33
DIR=target/emulators

die() { printf 'emulators: %s\n' "$*" >&2; exit 1; }

# A venv is reused only when it holds exactly the pinned version, so a bump reinstalls.
install_one() {
  local venv=$1 spec=$2 dist=$3 version=$4
  if [[ -x $venv/bin/python ]] && [[ "$("$venv/bin/python" -m pip show "$dist" 2>/dev/null | sed -n 's/^Version: //p')" == "$version" ]]; then
    return
  fi
  printf 'emulators: installing %s into %s\n' "$spec" "$venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$spec" || die "pip install $spec failed"
}

install() {
  command -v python3 >/dev/null || die "python3 is required (Debian: apt-get install python3-venv)"
  install_one .venv-moto "moto[server]==$MOTO_VERSION" moto "$MOTO_VERSION"
  install_one .venv-ministack "ministack==$MINISTACK_VERSION" ministack "$MINISTACK_VERSION"
}

# The kernel hands out a free port for port 0; the tiny window before the emulator binds it is accepted.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits for `url` to answer 200; on failure shows the log tail and stops what was started.
wait_for() {
  local name=$1 url=$2 pid=$3 log=$4
  for _ in $(seq 1 150); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$log" >&2 || true
      stop
      die "$name exited during start-up (log above, full log in $log)"
    fi
    if python3 - "$url" <<'EOF' 2>/dev/null; then return; fi
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200 else 1)
EOF
    sleep 0.2
  done
  tail -n 40 "$log" >&2 || true
  stop
  die "$name did not answer $url within 30 s (log above, full log in $log)"
}

# Is the process recorded for `name` alive and still that emulator (not a reused PID)?
running() {
  local name=$1 pid
  [[ -f $DIR/$name.pid ]] || return 1
  pid=$(cat "$DIR/$name.pid")
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$name"
}

start() {
  [[ -x .venv-moto/bin/moto_server && -x .venv-ministack/bin/ministack ]] || die "not installed: run scripts/emulators.sh install"
  # Someone in this checkout already runs them: reuse rather than pull them from under their tests.
  if running moto && running ministack && [[ -f $DIR/env ]]; then
    printf 'emulators: already running; source %s/env\n' "$DIR" >&2
    return
  fi
  stop
  mkdir -p "$DIR/ministack-data"
  local moto_port ministack_port
  moto_port=$(free_port)
  ministack_port=$(free_port)

  # `9>&-`: the emulators must not inherit the lock, or they would hold it for as long as they run.
  # moto_server with a deeper recursion limit: moto's update-expression parser recurses once per action,
  # and at Python's default limit an update of some 180 actions fails with a RecursionError (HTTP 500).
  # DynamoDB takes any number of actions within its 4 KB expression limit, and the restart of a group with
  # a hundred event names writes about 160.
  .venv-moto/bin/python -c 'import sys; sys.setrecursionlimit(10000); from moto.server import main; sys.exit(main())' \
    -H 127.0.0.1 -p "$moto_port" >"$DIR/moto.log" 2>&1 9>&- &
  echo $! >"$DIR/moto.pid"
  # ministack binds 0.0.0.0 unless told otherwise, and writes under TMPDIR / S3_DATA_DIR.
  BIND_HOST=127.0.0.1 GATEWAY_PORT="$ministack_port" S3_DATA_DIR="$PWD/$DIR/ministack-data/s3" \
    TMPDIR="$PWD/$DIR/ministack-data" .venv-ministack/bin/ministack >"$DIR/ministack.log" 2>&1 9>&- &
  echo $! >"$DIR/ministack.pid"

  wait_for moto "http://127.0.0.1:$moto_port/moto-api/" "$(cat "$DIR/moto.pid")" "$DIR/moto.log"
  wait_for ministack "http://127.0.0.1:$ministack_port/_ministack/health" "$(cat "$DIR/ministack.pid")" "$DIR/ministack.log"

  cat >"$DIR/env" <<EOF
export TOKENWATCH_MOTO_ENDPOINT=http://127.0.0.1:$moto_port
export TOKENWATCH_MINISTACK_ENDPOINT=http://127.0.0.1:$ministack_port
EOF
  printf 'emulators: moto on 127.0.0.1:%s, ministack on 127.0.0.1:%s; source %s/env\n' \
    "$moto_port" "$ministack_port" "$DIR" >&2
}

stop() {
  local name pid
  for name in moto ministack; do
    [[ -f $DIR/$name.pid ]] || continue
    pid=$(cat "$DIR/$name.pid")
    if running "$name"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if running "$name"; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$DIR/$name.pid"
  done
  rm -f "$DIR/env"
}

# One start or stop at a time per checkout: two racing starts would each record PIDs and orphan one pair.
lock() {
  mkdir -p "$DIR"
  exec 9>"$DIR/lock"
  flock 9
}

case "${1:-}" in
  install) install ;;
  start) lock; start ;;
  stop) lock; stop ;;
  *) die "usage: scripts/emulators.sh install|start|stop" ;;
esac
