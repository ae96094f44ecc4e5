#!/usr/bin/env bash
# make demo: start zhuge, run a few jobs through it, show what happened, stop cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export ZHUGE_HOME="${ZHUGE_HOME:-$PWD/.zhuge-demo}"
PORT="$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export ZHUGE_URL="http://127.0.0.1:$PORT"
export ZHUGE_RETRY_BASE_SECONDS=0.5
zhuge() { "$BIN/zhuge" "$@"; }
step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }

step "zhuge up (home $ZHUGE_HOME, port $PORT)"
"$BIN/zhuge" up --port "$PORT" --workers 2 --log-level warning &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  if "$BIN/python" -c "import httpx,sys; sys.exit(httpx.get('$ZHUGE_URL/healthz').status_code != 200)" 2>/dev/null; then break; fi
  sleep 0.5
done

step "submit an echo job and wait for it"
zhuge submit echo -p greeting=hello -p fleet='["vm-1","vm-2"]' --wait

step "submit three sleeps, one that fails once and is retried, one to cancel"
ids=()
for s in 1 2 1.5; do ids+=("$(zhuge submit sleep -p seconds=$s --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"); done
flaky="$(zhuge submit sleep -p seconds=0.5 -p fail_times=1 --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
doomed="$(zhuge submit sleep -p seconds=60 --priority -5 --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
zhuge jobs cancel "$doomed"

step "the same request twice with one Idempotency-Key gives one job"
zhuge submit echo -p run=nightly --idempotency-key nightly-demo
zhuge submit echo -p run=nightly --idempotency-key nightly-demo

step "wait for all of them"
for id in "${ids[@]}" "$flaky"; do zhuge jobs wait "$id" --timeout 120; done

step "jobs so far"
zhuge jobs ls
step "the retried job's history"
zhuge jobs show "$flaky"
step "status"
zhuge status

# --- the headline pipeline: fleet telemetry -> forecast -> migration plan -> VM segments ----
DATA="$ZHUGE_HOME/demo-fleet"
step "generate a synthetic fleet: 300 VMs, 14 days at 5 minutes (cycles, bursts, gaps, level shifts)"
zhuge demo-data fleet --vms 300 --days 14 --freq 5min --out "$DATA"

step "backtest: zhuge auto next to the baselines, 2 rolling windows of 24 h"
zhuge backtest --input "$DATA/telemetry.parquet" --freq 1h --horizon 24h --windows 2

step "forecast every VM for the next 24 h with an 80 % interval"
zhuge forecast --input "$DATA/telemetry.parquet" --freq 1h --horizon 24h --quantiles 0.1,0.9 \
  --out "$DATA/forecast.parquet"

step "plan live migrations into the quietest hours (2 per host, 20 per cluster, 200 Gbit/s shared)"
zhuge plan-migrations --forecast "$DATA/forecast.parquet" --vms "$DATA/vms.parquet" \
  --window 1h --deadline 24h --max-per-host 2 --max-per-cluster 20 --bandwidth-gbps 200 \
  --out "$DATA/plan.parquet"

step "group the VMs by the shape of their daily load"
zhuge cluster --template load-profile --input "$DATA/telemetry.parquet" --out "$DATA/vm_groups.parquet"

step "the nightly fleet run as one pipeline on the server (template fleet-nightly): prepare -> train behind the release gate -> forecast with the champion -> score -> plan"
# a smaller fleet than above keeps this step short (the 300-VM fleet took 99 s on 2 cores)
zhuge demo-data fleet --vms 50 --days 10 --freq 5min --seed 1 --out "$DATA/nightly" >/dev/null
zhuge datasets put "$DATA/nightly/telemetry.parquet" --name demo-telemetry
zhuge datasets put "$DATA/nightly/vms.parquet" --name demo-vms
nightly="$(zhuge pipeline run --template fleet-nightly --source dataset://demo-telemetry \
  --vms dataset://demo-vms --param algorithm=gbm --wait --json \
  | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
zhuge pipeline show "$nightly"

step "and every night at 02:00 Shanghai time, once per slot (zhuge schedules show: next slots, runs)"
zhuge schedules add fleet-nightly --cron '0 2 * * *' --timezone Asia/Shanghai \
  --template fleet-nightly --source dataset://demo-telemetry --vms dataset://demo-vms \
  --param algorithm=gbm
zhuge schedules show fleet-nightly

step "every job of this demo"
zhuge jobs ls
step "outputs"
ls -l "$DATA"
