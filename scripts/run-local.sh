#!/usr/bin/env bash
# `make run`: the whole shop on this machine, with moto's server playing AWS.
#   scripts/run-local.sh          emulator + migrate + provision + demo data + web + worker + relay
#   scripts/run-local.sh token E  print a fresh ID token for demo customer E (shop running)
#   scripts/run-local.sh manage C  run manage.py C against the running shop's emulator
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

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping (pids ${pids[*]:-none})"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

if curl -fsS "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1; then
  echo "using the emulator already running at $AWS_ENDPOINT_URL"
else
  echo "starting the AWS emulator (moto) on $AWS_ENDPOINT_URL, log var/moto.log"
  .venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >var/moto.log 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -fsS "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break
    sleep 0.2
  done
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

# Prometheus multiprocess mode: one directory per service, emptied at each start.
rm -rf var/metrics
mkdir -p var/metrics/web var/metrics/worker

echo "starting the web server on http://127.0.0.1:$WEB_PORT (log var/web.log)"
PROMETHEUS_MULTIPROC_DIR=var/metrics/web \
  "$PY" manage.py runserver "127.0.0.1:$WEB_PORT" --noreload >var/web.log 2>&1 &
pids+=($!)
echo "starting the Celery worker (log var/worker.log)"
PROMETHEUS_MULTIPROC_DIR=var/metrics/worker WORKER_METRICS_PORT=$WORKER_METRICS_PORT \
  .venv/bin/celery -A shop worker --loglevel INFO --concurrency 2 >var/worker.log 2>&1 &
pids+=($!)

echo "starting the outbox relay (log var/relay.log)"
"$PY" manage.py outbox_relay >var/relay.log 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$WEB_PORT/healthz" >/dev/null 2>&1 && break
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
is in the dead-letter queue: see the worker log (var/worker.log) and the order in the admin.
Then fix it as an operator would (docs/operations.md, the walkthrough):

  make -s manage CMD="dlq_list"                      # or Admin > Operations > Dead-letter queue
  make -s manage CMD="ses_verify bob@example.com"    # verify the address in SES
  make -s manage CMD="dlq_redrive"                   # or "Redrive all" on the admin page

Logs: var/web.log, var/worker.log, var/relay.log, var/moto.log.  Ctrl-C stops everything.
MSG

# Stop everything when any one of them exits.
wait -n "${pids[@]}"
echo "a process exited; see var/*.log"
