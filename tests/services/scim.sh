#!/usr/bin/env bash
# Starts a throw-away in-memory SCIM 2.0 server (PyPI scim2-server) for tests at
# http://127.0.0.1:$CLOSEGATE_SCIM_PORT/v2 (/Users, /Groups, ...; also served without /v2).
# With CLOSEGATE_SCIM_TOKEN set, it requires "Authorization: Bearer $CLOSEGATE_SCIM_TOKEN";
# without it, it accepts every request. Data lives in memory only: a restart empties it.
# Idempotent: does nothing if an instance already answers.
set -euo pipefail

DIR="${CLOSEGATE_SCIM_DIR:-/tmp/closegate-scim}"
PORT="${CLOSEGATE_SCIM_PORT:-8090}"
TOKEN="${CLOSEGATE_SCIM_TOKEN:-}"
VERSION="0.8.3"
URL="http://127.0.0.1:${PORT}/v2"
PY="$(command -v python3)"

die() { echo "scim.sh: $*" >&2; exit 1; }
# Answers as configured: with a token, 401 without it and 200 with it; else 200.
answers() {
  local anon; anon="$(curl -s -o /dev/null -w '%{http_code}' "$URL/Users")" || return 1
  if [ -z "$TOKEN" ]; then [ "$anon" = 200 ]; else
    [ "$anon" = 401 ] && curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "$URL/Users"; fi
}

if answers; then echo "scim: already running at $URL"; exit 0; fi

if ! "$PY" -c 'import scim2_server.testserver.cli' 2>/dev/null; then
  PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --quiet --disable-pip-version-check "scim2-server==$VERSION" || die "pip install scim2-server failed"
fi

mkdir -p "$DIR"
# A stale instance of ours (e.g. started with another token): stop it by its pid.
OLD="$(cat "$DIR/scim.pid" 2>/dev/null || true)"
if [ -n "$OLD" ] && grep -qs scim2_server "/proc/$OLD/cmdline"; then kill "$OLD"; sleep 1; fi

setsid nohup "$PY" -c 'from scim2_server.testserver.cli import main; main()' \
  --hostname 127.0.0.1 --port "$PORT" ${TOKEN:+--bearer-token "$TOKEN"} \
  >"$DIR/scim.log" 2>&1 </dev/null &
echo $! >"$DIR/scim.pid"

for _ in $(seq 1 50); do answers && break; sleep 0.2; done
answers || die "scim2-server not answering at $URL/Users (see $DIR/scim.log)"
echo "scim: running at $URL (pid $(cat "$DIR/scim.pid")${TOKEN:+, bearer token required})"
