#!/usr/bin/env bash
# Runs examples/aws-web-app-deploy against local doubles of AWS Lambda and Systems Manager
# that speak the services' real protocols (the SDK cannot tell them from AWS): no AWS
# account, nothing leaves this machine.
#
#   examples/aws-web-app-deploy/run-against-doubles.sh          the deployment succeeds
#   examples/aws-web-app-deploy/run-against-doubles.sh --fail   the post-deployment check fails
#                                                               and the backup is restored through SSM
# Extra arguments after --fail (or after --) go to `opsbook run`.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail=()
if [ "${1:-}" = "--fail" ]; then fail=(--fail); shift; fi
[ "${1:-}" = "--" ] && shift

cargo build --release --quiet -p opsbook -p opsbook-doubles --bin opsbook --bin aws-doubles

state=$(mktemp -d)
trap 'kill "$doubles" 2>/dev/null || true; rm -rf "$state"' EXIT
./target/release/aws-doubles "${fail[@]}" > "$state/env" &
doubles=$!
for _ in $(seq 50); do [ -s "$state/env" ] && break; sleep 0.1; done
# shellcheck disable=SC1091
source "$state/env"

OPSBOOK_DB="$state/opsbook.db" ./target/release/opsbook run examples/aws-web-app-deploy/runbook.yaml \
  -p application_name=shop -p version=2.4.1 -p environment=staging "$@"
