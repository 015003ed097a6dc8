#!/bin/sh
# The image's entry point: one word per service, or any command as given (Kubernetes sets its
# own command for the chart's pods, which bypasses this script).
set -e
WORKSPACE=${STAGEPOST_WORKSPACE:-/opt/dagster/workspace.yaml}
[ $# -gt 0 ] || set -- webserver
case "$1" in
  webserver) shift
    exec dagster-webserver -h 0.0.0.0 -p "${STAGEPOST_WEBSERVER_PORT:-3000}" -w "$WORKSPACE" "$@" ;;
  daemon) shift
    exec dagster-daemon run -w "$WORKSPACE" "$@" ;;
  code-server) shift
    exec dagster code-server start -h 0.0.0.0 -p "${STAGEPOST_CODE_SERVER_PORT:-4000}" \
      -m pipelines.definitions "$@" ;;
  desk) shift
    # The finance desk, reachable by the host's reverse proxy only (compose binds 127.0.0.1).
    exec stagepost-desk --host 0.0.0.0 --port "${STAGEPOST_DESK_PORT:-3001}" "$@" ;;
  health) shift; exec stagepost-health "$@" ;;
  backup) shift; exec stagepost-backup "$@" ;;
  retention) shift; exec stagepost-retention "$@" ;;
  *) exec "$@" ;;
esac
