#!/usr/bin/env bash
# Copies the live release of APP in ENV aside and publishes where it went.
set -euo pipefail
. "$(dirname "$0")/common.sh"
app=$1 env=$2
live="$ROOT/$env/$app/live"
dest="$ROOT/backups/$app-$env-${BACKUP_DIR:-manual}"
mkdir -p "$dest" "$live"
cp -R "$live/." "$dest/"
count=$(find "$dest" -type f | wc -l | tr -d ' ')
echo "backup complete: $dest"
echo "saved $count files"
echo "backup_dir=$dest" >> "$OPSBOOK_OUTPUT"
