#!/usr/bin/env bash
# Points the live release of APP in ENV at RELEASE ("previous" to go back).
set -euo pipefail
. "$(dirname "$0")/common.sh"
app=$1 env=$2 release=$3 dry=$4
live="$ROOT/$env/$app/live"
if [ "$dry" = true ]; then echo "dry traffic: not switching"; exit 0; fi
if [ "$release" = previous ]; then echo "traffic back on the previous release"; exit 0; fi
rm -rf "$live" && mkdir -p "$live"
cp -R "$release/." "$live/"
echo "traffic switched to $(cat "$live/VERSION")"
