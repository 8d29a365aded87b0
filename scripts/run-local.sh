#!/usr/bin/env bash
# `make run`: the whole shop on this machine, with moto's server playing AWS.
#   scripts/run-local.sh          the emulator (scripts/emulator.py), then `shop` with it up
#   scripts/run-local.sh shop     migrate + provision + demo data, then the Procfile's web,
#                                 worker and relay under honcho (needs the emulator up)
#   scripts/run-local.sh token E  print a fresh ID token for demo customer E (shop running)
#   scripts/run-local.sh manage C  run manage.py C against the running shop's emulator
# Ctrl-C stops honcho's processes (honcho), then the emulator (scripts/emulator.py).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
MOTO_PORT=${MOTO_PORT:-5055}
WEB_PORT=${WEB_PORT:-8000}
WORKER_METRICS_PORT=${WORKER_METRICS_PORT:-9808}
mkdir -p var

# Local-only configuration: the emulator, dummy credentials, short retry waits.
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-shop.settings.development}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:$MOTO_PORT}
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
export COGNITO_REQUIRE_EMAIL_VERIFIED=${COGNITO_REQUIRE_EMAIL_VERIFIED:-false}
export CONFIRMATION_RETRY_DELAYS=${CONFIRMATION_RETRY_DELAYS:-5,5,5}
export MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY=HASH
export MOTO_COGNITO_IDP_USER_POOL_CLIENT_ID_STRATEGY=HASH
export WEB_PORT WORKER_METRICS_PORT
# Under honcho the processes write to a pipe: print()'s lines at once, not in blocks.
export PYTHONUNBUFFERED=1
# Written by provisioning: ORDER_QUEUE_URL, COGNITO_USER_POOL_ID, COGNITO_APP_CLIENT_ID.
ENV_FILE=var/local-aws.env

if [[ "${1:-}" == "token" || "${1:-}" == "manage" ]]; then
  [[ -f $ENV_FILE ]] || { echo "run 'make run' first (no $ENV_FILE)" >&2; exit 1; }
  set -a; . "$ENV_FILE"; set +a
  if [[ "$1" == "token" ]]; then
    exec "$PY" manage.py demo_token "${2:-alice@example.com}"
  fi
  shift
  exec "$PY" manage.py "$@"
fi

if [[ "${1:-}" != "shop" ]]; then
  # The emulator for as long as `shop` runs (one already answering on MOTO_PORT is used).
  exec "$PY" -m scripts.emulator --port "$MOTO_PORT" --log var/moto.log -- "$0" shop
fi

"$PY" manage.py migrate --noinput
# --order-events: the OrderPlaced topic and a demo queue subscribed to it (docs/orders.md).
# FIFO_QUEUES=true make run: a FIFO order queue and DLQ instead (shop-orders.fifo).
fifo=()
[[ "${FIFO_QUEUES:-false}" == "true" ]] && fifo=(--fifo)
"$PY" manage.py provision_aws --order-events "${fifo[@]}" --env-file "$ENV_FILE"
set -a; . "$ENV_FILE"; set +a
"$PY" manage.py load_demo_products
"$PY" manage.py dev_admin

rm -rf var/metrics
mkdir -p var/metrics/web var/metrics/worker

# Once the web server answers, how to use the shop; given up if honcho ($$ after exec) ends.
announce() {
  until curl -fsS "http://127.0.0.1:$WEB_PORT/healthz" >/dev/null 2>&1; do
    kill -0 $$ 2>/dev/null || exit 0
    sleep 0.2
  done
  cat <<MSG

The shop is up.
  Admin:    http://127.0.0.1:$WEB_PORT/admin/  (admin / admin)
  API docs: http://127.0.0.1:$WEB_PORT/api/docs/
  Emulator: $AWS_ENDPOINT_URL  (sent mail: $AWS_ENDPOINT_URL/moto-api/data.json)
  Metrics:  http://127.0.0.1:$WEB_PORT/metrics (web, queue depth)
            http://127.0.0.1:$WORKER_METRICS_PORT/metrics (worker: emails sent, failed attempts)

In another terminal, in this directory, place an order as the demo customer whose address
is verified in SES (alice@example.com):

  TOKEN=\$(make -s token EMAIL=alice@example.com)
  curl -s -X POST http://127.0.0.1:$WEB_PORT/api/orders/ \\
       -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
       -d '{"shipping_address": {"name": "Alice Example", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}, "items": [{"sku": "MUG-001", "quantity": 2}]}'
  curl -s http://127.0.0.1:$WEB_PORT/api/orders/ -H "Authorization: Bearer \$TOKEN"

Then see the email:  curl -s $AWS_ENDPOINT_URL/moto-api/data.json | python3 -m json.tool
  (and the order's "Confirmation email" status in the admin).

The same with EMAIL=bob@example.com: his address is not verified in the SES sandbox, so the
email is refused, retried ($CONFIRMATION_RETRY_DELAYS s apart) and, after 3 tries, the message
is in the dead-letter queue: see the worker's lines (worker.1) and the order in the admin.
Then fix it as an operator would (docs/operations.md, the walkthrough):

  make -s manage CMD="dlq_list"                      # or Admin > Operations > Dead-letter queue
  make -s manage CMD="ses_verify bob@example.com"    # verify the address in SES
  make -s manage CMD="dlq_redrive"                   # or "Redrive all" on the admin page

Logs: here, each line prefixed with its process (web.1, worker.1, relay.1); the emulator's
in var/moto.log.  Ctrl-C stops everything.
MSG
}
announce &

# The Procfile's processes; -e: the provisioned names, and not a developer's .env (settings
# read that one, under what is exported here). When one process exits, honcho stops the rest.
exec .venv/bin/honcho start -f Procfile -e "$ENV_FILE"
