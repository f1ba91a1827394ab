#!/usr/bin/env bash
# Sends a signed Standard Webhooks "ticket closed" event to a running closegate.
# Usage: deploy/send-sample.sh TICKET ROLE TABLE PRIVILEGES [URL]
#   CLOSEGATE_DEMO_SECRET must hold the source's whsec_ secret.
set -euo pipefail
ticket=${1:?ticket key}; role=${2:?role}; table=${3:?table}; privileges=${4:?privileges}
url=${5:-http://127.0.0.1:8080/hooks/demo}
secret=${CLOSEGATE_DEMO_SECRET:?set CLOSEGATE_DEMO_SECRET}
id="msg_$(date +%s%N)"
ts=$(date +%s)
body=$(printf '{"type":"ticket.updated","timestamp":"%s","data":{"ticket":"%s","state":"closed","previous_state":"in_progress","title":"Access request","labels":["access-request"],"fields":{"Request type":"grant","Database role":"%s","Table":"%s","Privileges":"%s"},"actor":{"id":"fulfilment-bob","kind":"human"},"requester":{"id":"ci-reporting","kind":"service"}}}' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ticket" "$role" "$table" "$privileges")
key_hex=$(printf '%s' "${secret#whsec_}" | openssl base64 -d -A | od -An -tx1 | tr -d ' \n')
sig=$(printf '%s.%s.%s' "$id" "$ts" "$body" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key_hex" -binary | openssl base64 -A)
curl -sS -i -X POST "$url" -H 'content-type: application/json' \
  -H "webhook-id: $id" -H "webhook-timestamp: $ts" -H "webhook-signature: v1,$sig" --data-binary "$body"
echo
