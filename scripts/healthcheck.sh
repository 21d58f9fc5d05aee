#!/bin/bash
# Container health check for lakepool without curl or wget: one HTTP GET over bash's /dev/tcp
# to the admin endpoint (`[server] admin_listen`), healthy when the status is 200.
#
#   lakepool-healthcheck              # GET /healthz on 127.0.0.1:9187
#   lakepool-healthcheck /readyz      # readiness instead of liveness
#
# Env: LAKEPOOL_HEALTH_ADDR=host:port (default 127.0.0.1:9187). An admin_listen of
# 0.0.0.0:9187 is reached on 127.0.0.1:9187. Exit 0 healthy, 1 otherwise (Docker's contract).
# The image installs it as /usr/local/bin/lakepool-healthcheck for its HEALTHCHECK.
set -u

addr="${LAKEPOOL_HEALTH_ADDR:-127.0.0.1:9187}"
path="${1:-/healthz}"
host="${addr%:*}"
port="${addr##*:}"
host="${host#[}"
host="${host%]}"

if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
    echo "lakepool-healthcheck: cannot connect to $addr (is [server] admin_listen set?)" >&2
    exit 1
fi
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
status=""
IFS= read -r -t 5 status <&3
exec 3<&-
status="${status%$'\r'}"
case "$status" in
"HTTP/1."?" 200 "*) exit 0 ;;
*)
    echo "lakepool-healthcheck: GET $path on $addr: ${status:-no answer}" >&2
    exit 1
    ;;
esac
