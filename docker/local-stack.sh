#!/usr/bin/env bash
# The server stack of docker/compose.yaml, as processes on loopback (no container engine needed):
# a throwaway PostgreSQL 15 cluster, an MLflow tracking server on it (artifacts served by the server),
# a Prefect server, the `router-process` work pool with flows/prefect.yaml's deployments, a process worker, and a
# Dask scheduler with worker processes for the scale-out flows (python -m flows.scale embed|route --address ...).
#
#   docker/local-stack.sh up      # start everything on free 127.0.0.1 ports, wait until healthy, deploy
#   eval "$(docker/local-stack.sh env)"   # the same variables compose gives its services
#   docker/local-stack.sh down    # stop every process it started (also after a failed `up`)
#   docker/local-stack.sh worker  # (re)start the Prefect worker (after it died or was killed)
#   docker/local-stack.sh deploy  # only the work pool and the deployments (compose's `deploy` service runs this)
#
# Optional: LOCAL_STACK_DIR (state, logs, pids; default ${TMPDIR:-/tmp}/xattn-router-stack), ROUTER_HOME (the
# workspace the worker runs the flows in; default $LOCAL_STACK_DIR/workspace), POSTGRES_USER (default router),
# POSTGRES_BIN (default /usr/lib/postgresql/15/bin), LOCAL_STACK_DASK_WORKERS (default 2; 0 = no Dask). `python` and `prefect`, `mlflow` are taken from PATH
# (or from $VENV/bin when VENV is set). Run as root, PostgreSQL runs as the `postgres` user.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${LOCAL_STACK_DIR:-${TMPDIR:-/tmp}/xattn-router-stack}"
PGBIN="${POSTGRES_BIN:-/usr/lib/postgresql/15/bin}"
POOL="router-process"
BIN="${VENV:+$VENV/bin/}"

log() { echo "local-stack: $*" >&2; }

free_port() { "${BIN}python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_http() {  # URL SECONDS NAME LOGFILE
  local deadline=$((SECONDS + $2))
  until "${BIN}python" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then log "$3 not healthy after $2 s ($1); last log lines:"; tail -20 "$4" >&2; return 1; fi
    sleep 0.5
  done
  log "$3 healthy at $1"
}

# start NAME CMD... : a background process in its own session (down kills the whole group), pid in $DIR/pids
start() {
  local name="$1"; shift
  setsid "$@" >"$DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$DIR/pids/$name.pid"
}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/bash -c "$1"; else bash -c "$1"; fi
}

write_env() {
  cat > "$DIR/env.sh" <<EOF
export LOCAL_STACK_DIR='$DIR'
export POSTGRES_USER='$PGUSER_'
export POSTGRES_PORT='$PG_PORT'
export MLFLOW_BACKEND_STORE_URI='postgresql+psycopg://$PGUSER_@127.0.0.1:$PG_PORT/mlflow'
export ROUTER_HOME='$WORKSPACE'
export ROUTER_PROJECT_DIR='$ROOT'
export ROUTER_MLFLOW_TRACKING_URI='http://127.0.0.1:$MLFLOW_PORT'
export PREFECT_API_URL='http://127.0.0.1:$PREFECT_PORT/api'
export PREFECT_SERVER_ANALYTICS_ENABLED='false'
export PREFECT_LOGGING_EXTRA_LOGGERS='router'
export HF_HUB_OFFLINE='1'
export TRANSFORMERS_OFFLINE='1'
export DASK_SCHEDULER_ADDRESS='tcp://127.0.0.1:$DASK_PORT'
EOF
}

up() {
  if [ -f "$DIR/env.sh" ]; then log "already up ($DIR/env.sh); run down first"; return 1; fi
  mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/pg" "$DIR/artifacts" "$DIR/prefect"
  DIR="$(cd "$DIR" && pwd)"
  WORKSPACE="${ROUTER_HOME:-$DIR/workspace}"
  mkdir -p "$WORKSPACE"
  WORKSPACE="$(cd "$WORKSPACE" && pwd)"
  PGUSER_="${POSTGRES_USER:-router}"
  PG_PORT="$(free_port)"; MLFLOW_PORT="$(free_port)"; PREFECT_PORT="$(free_port)"; DASK_PORT="$(free_port)"
  write_env

  # PostgreSQL: initdb refuses root; its folder belongs to `postgres` and every parent must be traversable.
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$DIR/pg"
    local p="$DIR"; while [ "$p" != "/" ]; do chmod o+x "$p" 2>/dev/null || true; p="$(dirname "$p")"; done
  fi
  as_postgres "'$PGBIN/initdb' -D '$DIR/pg/data' -A trust -U '$PGUSER_' >'$DIR/pg/initdb.log' 2>&1"
  as_postgres "'$PGBIN/pg_ctl' -D '$DIR/pg/data' -o \"-p $PG_PORT -k '$DIR/pg' -c listen_addresses=127.0.0.1\" -l '$DIR/pg/postgres.log' -w start >/dev/null"
  "$PGBIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PGUSER_" -d postgres -f "$ROOT/docker/postgres-init.sql"
  log "postgres up on 127.0.0.1:$PG_PORT"

  # shellcheck disable=SC1091
  . "$DIR/env.sh"
  start mlflow "${BIN}mlflow" server --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
    --artifacts-destination "$DIR/artifacts" --serve-artifacts --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1
  PREFECT_HOME="$DIR/prefect" start prefect-server "${BIN}prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
  wait_http "$ROUTER_MLFLOW_TRACKING_URI/health" 180 mlflow "$DIR/logs/mlflow.log"
  wait_http "$PREFECT_API_URL/health" 180 prefect-server "$DIR/logs/prefect-server.log"

  export PREFECT_HOME="$DIR/prefect"
  (cd "$ROOT" && deploy) > "$DIR/logs/deploy.log" 2>&1 || { log "deploy failed:"; tail -30 "$DIR/logs/deploy.log" >&2; return 1; }
  start_worker
  start_dask
  log "up: eval \"\$($0 env)\" for the variables; $0 down stops it"
}

deploy() {  # the work pool and flows/prefect.yaml's deployments (compose's `deploy` service runs the same)
  "${BIN}prefect" work-pool inspect "$POOL" >/dev/null 2>&1 || "${BIN}prefect" work-pool create "$POOL" --type process
  "${BIN}prefect" --no-prompt deploy --all --prefect-file flows/prefect.yaml
}

start_worker() {  # the Prefect process worker: runs the deployments' flows with this environment
  local old; old="$(cat "$DIR/pids/worker.pid" 2>/dev/null || true)"
  if [ -n "$old" ]; then kill -KILL -- "-$old" 2>/dev/null || true; fi
  start worker "${BIN}prefect" worker start --pool "$POOL" --type process
  wait_worker
}

start_dask() {  # a scheduler and LOCAL_STACK_DASK_WORKERS single-threaded worker processes, reporting to Prefect
  local n="${LOCAL_STACK_DASK_WORKERS:-2}" i
  [ "$n" -gt 0 ] || return 0
  start dask-scheduler "${BIN}dask" scheduler --host 127.0.0.1 --port "$DASK_PORT" --no-dashboard
  for i in $(seq 1 "$n"); do
    start "dask-worker-$i" "${BIN}dask" worker "$DASK_SCHEDULER_ADDRESS" --host 127.0.0.1 --nworkers 1 \
      --nthreads 1 --no-dashboard --name "worker-$i"
  done
  "${BIN}python" -c "import sys; from distributed import Client; c = Client(sys.argv[1], timeout=60); \
c.wait_for_workers(int(sys.argv[2]), timeout=120); c.close()" "$DASK_SCHEDULER_ADDRESS" "$n" \
    || { log "dask workers not up; last log lines:"; tail -20 "$DIR"/logs/dask-*.log >&2; return 1; }
  log "dask scheduler $DASK_SCHEDULER_ADDRESS with $n workers"
}

wait_worker() {  # the pool is READY once a worker polls it
  local deadline=$((SECONDS + 120))
  until "${BIN}prefect" work-pool inspect "$POOL" 2>/dev/null | grep -q "status=WorkPoolStatus.READY\|'READY'\|READY"; do
    if ! kill -0 "$(cat "$DIR/pids/worker.pid")" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      log "worker not polling; last log lines:"; tail -20 "$DIR/logs/worker.log" >&2; return 1
    fi
    sleep 1
  done
  log "worker polling $POOL"
}

down() {
  local f pid
  for f in "$DIR"/pids/*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  local deadline=$((SECONDS + 10)) left=1  # ten seconds to exit cleanly, together; then SIGKILL
  while [ "$left" -eq 1 ] && [ "$SECONDS" -lt "$deadline" ]; do
    left=0
    for f in "$DIR"/pids/*.pid; do
      if [ -f "$f" ] && kill -0 -- "-$(cat "$f")" 2>/dev/null; then left=1; fi
    done
    [ "$left" -eq 0 ] || sleep 0.25
  done
  for f in "$DIR"/pids/*.pid; do
    [ -f "$f" ] || continue
    kill -KILL -- "-$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  if [ -f "$DIR/pg/data/postmaster.pid" ]; then  # SIGINT = pg_ctl's fast shutdown (root needs no su for it)
    pid="$(head -1 "$DIR/pg/data/postmaster.pid")"
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/env.sh"
  log "down"
}

case "${1:-}" in
  up) up || { rc=$?; down; exit "$rc"; } ;;
  down) down ;;
  env) if [ -f "$DIR/env.sh" ]; then cat "$DIR/env.sh"; else log "not up ($DIR)"; exit 1; fi ;;
  deploy) cd "$ROOT" && deploy ;;  # compose's `deploy` service
  worker) . "$DIR/env.sh"; export PREFECT_HOME="$DIR/prefect"; start_worker ;;
  *) echo "usage: $0 up|down|env|worker" >&2; exit 2 ;;
esac
