#!/usr/bin/env bash
# Unpacks the artifact as a new release and serves /health from it.
set -euo pipefail
. "$(dirname "$0")/common.sh"
app=$1 version=$2 env=$3 replicas=$4
release="$ROOT/$env/$app/releases/$version"
mkdir -p "$release"
tar -xf "$(dirname "$0")/app.tar" -C "$release"
echo "$version" > "$release/VERSION"
echo ok > "$release/health"
if [ -n "${DB_PASSWORD:-}" ]; then
  echo "connecting with password $DB_PASSWORD"   # masked as *** in every log
else
  echo "no database password given (-p db_password=... to pass one)"
fi
echo "release_dir=$release" >> "$OPSBOOK_OUTPUT"
if command -v python3 >/dev/null 2>&1; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # Detached from our output so the step does not wait for the server.
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$release" >/dev/null 2>&1 &
  echo "server_pid=$!" >> "$OPSBOOK_OUTPUT"
  # Deployed means listening: wait for the new release to take connections (up to 30 s).
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  echo "port=$port" >> "$OPSBOOK_OUTPUT"
  echo "health_mode=http" >> "$OPSBOOK_OUTPUT"
else
  echo "server_pid=" >> "$OPSBOOK_OUTPUT"
  echo "health_mode=file" >> "$OPSBOOK_OUTPUT"
fi
echo "deployed $app $version to $env with $replicas replicas"
