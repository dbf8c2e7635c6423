# Shared by the example scripts: where the "servers" live.
ROOT="${OPSBOOK_EXAMPLE_ROOT:-${TMPDIR:-/tmp}/opsbook-example}"
mkdir -p "$ROOT"
