#!/usr/bin/env bash
# Starts a throw-away OpenLDAP (slapd) for tests on ldap://127.0.0.1:$CLOSEGATE_LDAP_PORT/
# suffix dc=closegate,dc=test, admin cn=admin,dc=closegate,dc=test / admin.
# Overlays: memberof (+refint) so groupOfNames members get memberOf, and ppolicy
# (its schema is built into ppolicy.la on OpenLDAP 2.5+) so pwdAccountLockedTime exists.
# Idempotent: does nothing if an instance already answers; otherwise recreates the dir.
set -euo pipefail

DIR="${CLOSEGATE_LDAP_DIR:-/tmp/closegate-ldap}"
PORT="${CLOSEGATE_LDAP_PORT:-3389}"
URL="ldap://127.0.0.1:${PORT}"
BASE="dc=closegate,dc=test"
ADMIN="cn=admin,${BASE}"
PASS="admin"

die() { echo "ldap.sh: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
answers() { ldapsearch -x -H "$URL" -D "$ADMIN" -w "$PASS" -b "$BASE" -s base >/dev/null 2>&1; }

if [ ! -x /usr/sbin/slapd ] || ! command -v ldapadd >/dev/null 2>&1; then
  # No default database, and policy-rc.d keeps the package from starting a system
  # slapd on :389, so only our own instance below runs.
  echo "slapd slapd/no_configuration boolean true" | as_root debconf-set-selections
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils \
    >/tmp/closegate-ldap-apt.log 2>&1 || die "apt-get install slapd ldap-utils failed (see /tmp/closegate-ldap-apt.log)"
fi

if answers; then echo "ldap: already running at $URL (base $BASE)"; exit 0; fi

# Stale or missing: stop our old instance (if any) and start from scratch.
case "$DIR" in /|"") die "refusing CLOSEGATE_LDAP_DIR='$DIR'";; esac
OLD="$(cat "$DIR/slapd.pid" 2>/dev/null || true)"
if [ -n "$OLD" ] && grep -qs "$DIR/slapd.conf" "/proc/$OLD/cmdline"; then kill "$OLD"; sleep 1; fi
rm -rf "$DIR"
mkdir -p "$DIR/db"

cat >"$DIR/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
moduleload ppolicy
pidfile $DIR/slapd.pid
argsfile $DIR/slapd.args

database mdb
suffix "$BASE"
rootdn "$ADMIN"
rootpw $(/usr/sbin/slappasswd -s "$PASS")
directory $DIR/db
maxsize 104857600
index objectClass,uid,cn,member eq

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

overlay refint
refint_attributes member

overlay ppolicy
EOF

/usr/sbin/slapd -f "$DIR/slapd.conf" -h "$URL/" >"$DIR/slapd.log" 2>&1 \
  || die "slapd failed to start: $(tail -5 "$DIR/slapd.log")"
for _ in $(seq 1 50); do
  ldapsearch -x -H "$URL" -b "" -s base >/dev/null 2>&1 && break
  sleep 0.2
done

ldapadd -x -H "$URL" -D "$ADMIN" -w "$PASS" >/dev/null <<EOF || die "adding base entries failed"
dn: $BASE
objectClass: dcObject
objectClass: organization
dc: closegate
o: closegate

dn: ou=people,$BASE
objectClass: organizationalUnit
ou: people

dn: ou=groups,$BASE
objectClass: organizationalUnit
ou: groups
EOF

answers || die "slapd not answering at $URL (see $DIR/slapd.log)"
echo "ldap: running at $URL (base $BASE, admin $ADMIN / $PASS, pid $(cat "$DIR/slapd.pid"))"
