#!/usr/bin/env bash
# Set up the environment (idempotent) and reconstruct the bundled photo (see README).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
venv="${WETOK_VENV:-$root/.venv}"
exec "$venv/bin/python" "$root/scripts/demo.py" "$@"
