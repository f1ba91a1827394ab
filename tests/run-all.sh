#!/usr/bin/env bash
# Runs the whole test suite from a fresh machine: installs and starts what the
# tests need (PostgreSQL), then runs every test on SQLite and the API tests
# again on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    for version in $(ls /etc/postgresql); do
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432
  # Trust auth (this machine's default) ignores the password; a stock install needs it.
  if ! psql -q -w "postgres://postgres@127.0.0.1:5432/postgres" -c 'SELECT 1' >/dev/null 2>&1; then
    as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
    export CLOSEGATE_TEST_PG="postgres://postgres:postgres@127.0.0.1:5432"
  fi
}

ensure_postgres
cargo test --all-targets
CLOSEGATE_TEST_BACKEND=postgres cargo test --test api
