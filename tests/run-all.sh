#!/usr/bin/env bash
# Runs the whole test suite from a fresh machine: installs and starts what the
# tests need (PostgreSQL, MariaDB, Redis, OpenLDAP, a SCIM server, a real
# django-helpdesk), then runs
# every test on SQLite and the API tests again on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_postgres() {
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
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
  # Each test and benchmark makes a database of its own; those left by earlier
  # runs (and not in use by one still running) are dropped, so that the
  # cluster does not grow run after run.
  local pg="${CLOSEGATE_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
  pg="${pg%/}"
  for db in $(psql -qAt -w "$pg/postgres" -c "SELECT datname FROM pg_database
      WHERE datname ~ '^cg_(store|bench)_[0-9a-f]+$'
      AND datname NOT IN (SELECT datname FROM pg_stat_activity WHERE datname IS NOT NULL)"); do
    psql -q -w "$pg/postgres" -c "DROP DATABASE \"$db\"" >/dev/null 2>&1 || echo "left $db: in use" >&2
  done
  # Likewise the target schemas and roles the tests made (`cg_<what>_<12 hex>`),
  # unless another client is connected to the target database (a test run
  # under way), each in a transaction of its own.
  if [ "$(psql -qAt -w "$pg/postgres" -c "SELECT count(*) FROM pg_stat_activity
      WHERE datname = 'postgres' AND backend_type = 'client backend' AND pid <> pg_backend_pid()")" = 0 ]; then
    psql -qAt -w "$pg/postgres" -c "SELECT format('DROP SCHEMA %I CASCADE;', nspname) FROM pg_namespace
        WHERE nspname ~ '^cg_schema_[0-9a-f]{12}\$'
      UNION ALL SELECT format('DROP OWNED BY %1\$I; DROP ROLE %1\$I;', rolname) FROM pg_roles
        WHERE rolname ~ '^cg_[a-z_]+_[0-9a-f]{12}\$' AND rolname !~ '^cg_bench_'" \
      | psql -q -w "$pg/postgres" >/dev/null 2>&1 || echo "left some test schemas or roles" >&2
  fi
}

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_mariadb() {
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
  if ! mysqladmin --protocol=tcp -h 127.0.0.1 -uroot ping >/dev/null 2>&1 && ! mysqladmin ping >/dev/null 2>&1; then
    as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  fi
  for _ in $(seq 1 30); do mysqladmin ping >/dev/null 2>&1 && break; sleep 1; done
  # Root over TCP with no password (this machine's default); a stock install only
  # allows root on the socket, so the tests get their own administrator.
  if ! mysql --protocol=tcp -h 127.0.0.1 -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    as_root mysql -e "CREATE USER IF NOT EXISTS 'closegate'@'%' IDENTIFIED BY 'closegate';
      GRANT ALL ON *.* TO 'closegate'@'%' WITH GRANT OPTION;"
    export CLOSEGATE_TEST_MYSQL="mysql://closegate:closegate@127.0.0.1:3306/mysql"
  fi
}

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 1; done
}

command -v psql >/dev/null 2>&1 || apt_install postgresql-client
ensure_postgres
ensure_mariadb
ensure_redis
# The audit pack is rendered in a real headless browser.
command -v chromium >/dev/null 2>&1 || apt_install chromium
bash tests/services/ldap.sh
bash tests/services/scim.sh
bash tests/services/django_helpdesk.sh
cargo test --all-targets
CLOSEGATE_TEST_BACKEND=postgres cargo test --test api
# The HTTP contract, checked by schemathesis against a running server.
bash tests/contract/run.sh
