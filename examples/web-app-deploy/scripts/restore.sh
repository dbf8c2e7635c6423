#!/usr/bin/env bash
# Puts a backup back in place of the live release.
set -euo pipefail
. "$(dirname "$0")/common.sh"
app=$1 env=$2 src=$3
live="$ROOT/$env/$app/live"
rm -rf "$live" && mkdir -p "$live"
cp -R "$src/." "$live/"
echo "restored $app in $env from $src"
