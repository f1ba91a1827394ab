#!/usr/bin/env bash
# Checks the running server against its own OpenAPI document with schemathesis
# (PyPI): for a bounded number of examples per operation, no 5xx, and every
# response's status, content type, headers and body match the contract,
# JSON error bodies included.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION="4.32.5"
VENV="${CLOSEGATE_SCHEMATHESIS_VENV:-/tmp/closegate-schemathesis}"
EXAMPLES="${CLOSEGATE_CONTRACT_EXAMPLES:-40}"
PG="${CLOSEGATE_TEST_PG:-postgres://postgres@127.0.0.1:5432}"

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  python3 -m venv "$VENV"
  PIP_ROOT_USER_ACTION=ignore "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi

cargo build --quiet --bin closegate
WORK="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
CLOSEGATE__DATABASE_URL="sqlite://$WORK/closegate.db" \
CLOSEGATE__EVIDENCE__HEADS_DIR="$WORK/heads" \
CLOSEGATE_CONTRACT_TARGET_URL="$PG/postgres" \
  target/debug/closegate --config tests/contract/closegate.yaml serve >"$WORK/server.log" 2>&1 &
PID=$!
BASE="http://127.0.0.1:18231"
for _ in $(seq 1 100); do curl -sf -o /dev/null "$BASE/healthz" && break; sleep 0.1; done

status=0
"$VENV/bin/schemathesis" --config-file tests/contract/schemathesis.toml run "$BASE/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$EXAMPLES" \
  --workers 2 \
  --header "Authorization: Bearer contract-gate-token" \
  --request-timeout 10 \
  --suppress-health-check all || status=$?
if [ "$status" != 0 ]; then
  echo "--- server log ---"; tail -50 "$WORK/server.log"
fi
exit "$status"
