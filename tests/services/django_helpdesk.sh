#!/usr/bin/env bash
# Starts a throw-away django-helpdesk (PyPI django-helpdesk, SQLite, Django runserver)
# for tests at http://127.0.0.1:$CLOSEGATE_DH_PORT, REST API under /api/ (basic auth).
#   users:  admin/admin and closegate/closegate (both superusers)
#   queue:  slug "access", title "Access requests"
#   custom fields (varchar): database_role ("Database role"), request_type ("Request type")
# Webhooks: the follow-up webhook URL(s) are re-read from $CLOSEGATE_DH_DIR/webhook_url on
# every follow-up, new-ticket ones from $CLOSEGATE_DH_DIR/new_ticket_webhook_url (one or
# more URLs separated by whitespace or commas; empty = no webhook), so a test can retarget
# them without a restart. A start sets them from CLOSEGATE_DH_WEBHOOK_URL and
# CLOSEGATE_DH_NEW_TICKET_WEBHOOK_URL (empty when unset); when already running, only the
# variables that are set are written. Note: helpdesk posts webhooks synchronously and a
# refused connection makes the API call that caused it answer 500, so leave the files
# empty unless something listens.
# Idempotent: does nothing if an instance already answers. Python deps live in a venv
# under $CLOSEGATE_DH_DIR/venv; the project (settings.py etc.) is rewritten on each start.
set -euo pipefail

DIR="${CLOSEGATE_DH_DIR:-/tmp/closegate-dh}"
PORT="${CLOSEGATE_DH_PORT:-8095}"
URL="http://127.0.0.1:${PORT}"
PINS=(django-helpdesk==2.6.1 django==5.2.19 djangorestframework==3.18.3)
VENV="$DIR/venv"
PY="$VENV/bin/python"

die() { echo "django_helpdesk.sh: $*" >&2; exit 1; }
answers() { curl -sf -o /dev/null -u admin:admin "$URL/api/tickets/"; }
set_hooks() {  # $1 = only write the variables that are set
  if [ -z "${1:-}" ] || [ -n "${CLOSEGATE_DH_WEBHOOK_URL+x}" ]; then
    printf '%s' "${CLOSEGATE_DH_WEBHOOK_URL:-}" >"$DIR/webhook_url"; fi
  if [ -z "${1:-}" ] || [ -n "${CLOSEGATE_DH_NEW_TICKET_WEBHOOK_URL+x}" ]; then
    printf '%s' "${CLOSEGATE_DH_NEW_TICKET_WEBHOOK_URL:-}" >"$DIR/new_ticket_webhook_url"; fi
}

if answers; then
  set_hooks only-set
  echo "django-helpdesk: already running at $URL"; exit 0
fi

mkdir -p "$DIR/dhsite"
# A stale instance of ours: stop it by its pid.
OLD="$(cat "$DIR/dh.pid" 2>/dev/null || true)"
if [ -n "$OLD" ] && grep -qs runserver "/proc/$OLD/cmdline"; then kill "$OLD"; sleep 1; fi

if ! "$PY" -c "import importlib.metadata as m; assert m.version('django-helpdesk') == '${PINS[0]#*==}'" 2>/dev/null; then
  python3 -m venv "$VENV" || die "cannot create venv $VENV"
  PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" \
    || die "pip install ${PINS[*]} failed"
fi

cat >"$DIR/manage.py" <<'EOF'
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dhsite.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
EOF
: >"$DIR/dhsite/__init__.py"
cat >"$DIR/dhsite/urls.py" <<'EOF'
from django.contrib import admin
from django.urls import include, path
urlpatterns = [path("admin/", admin.site.urls), path("", include("helpdesk.urls"))]
EOF
cat >"$DIR/dhsite/settings.py" <<'EOF'
import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "closegate-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "django.contrib.sites", "django.contrib.humanize", "rest_framework", "helpdesk",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "dhsite.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages"]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
SITE_ID = 1
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
MEDIA_ROOT = BASE_DIR / "media"
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"console": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["console"], "level": "WARNING"}}

HELPDESK_API_ENABLED = True
HELPDESK_TEAMS_MODE_ENABLED = False  # else helpdesk needs pinax-teams
HELPDESK_WEBHOOK_TIMEOUT = 3


def _urls(name):
    # Re-read on every call so tests can retarget webhooks without a restart.
    try:
        text = (BASE_DIR / name).read_text()
    except FileNotFoundError:
        return []
    return [u for u in re.split(r"[\s,]+", text) if u]


def HELPDESK_GET_FOLLOWUP_WEBHOOK_URLS():
    return _urls("webhook_url")


def HELPDESK_GET_NEW_TICKET_WEBHOOK_URLS():
    return _urls("new_ticket_webhook_url")
EOF

set_hooks
cd "$DIR"
"$PY" manage.py migrate --noinput >"$DIR/setup.log" 2>&1 || die "migrate failed (see $DIR/setup.log)"
"$PY" manage.py shell -c '
from django.contrib.auth import get_user_model
from helpdesk.models import CustomField, Queue
User = get_user_model()
for name in ("admin", "closegate"):
    if not User.objects.filter(username=name).exists():
        User.objects.create_superuser(name, f"{name}@example.test", name)
Queue.objects.get_or_create(slug="access", defaults={"title": "Access requests"})
for i, (name, label) in enumerate([("database_role", "Database role"), ("request_type", "Request type")]):
    CustomField.objects.get_or_create(name=name, defaults={
        "label": label, "data_type": "varchar", "max_length": 200, "ordering": i})
' >>"$DIR/setup.log" 2>&1 || die "creating users/queue/custom fields failed (see $DIR/setup.log)"

setsid nohup "$PY" manage.py runserver "127.0.0.1:$PORT" --noreload >"$DIR/dh.log" 2>&1 </dev/null &
echo $! >"$DIR/dh.pid"

for _ in $(seq 1 100); do answers && break; kill -0 "$(cat "$DIR/dh.pid")" 2>/dev/null || break; sleep 0.2; done
answers || die "django-helpdesk not answering at $URL/api/tickets/ (see $DIR/dh.log)"
echo "django-helpdesk: running at $URL (pid $(cat "$DIR/dh.pid"), api $URL/api/, admin:admin)"
