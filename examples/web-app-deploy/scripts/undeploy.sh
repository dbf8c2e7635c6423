#!/usr/bin/env bash
# Removes a release and stops its server.
set -euo pipefail
release=$1 pid=${2:-}
if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
rm -rf "$release"
echo "removed $release"
