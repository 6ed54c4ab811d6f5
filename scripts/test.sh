#!/usr/bin/env bash
# Set up the environment (idempotent) and run the whole test suite offline.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh" --test
venv="${WETOK_VENV:-$root/.venv}"
cd "$root"
export HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -q "$@"
