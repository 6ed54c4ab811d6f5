#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment; idempotent and quick when nothing changed.
#   bash scripts/setup.sh          runtime dependencies + wetok (editable)
#   bash scripts/setup.sh --test   the same plus the test dependencies
# The environment lives in $WETOK_VENV (default: .venv in the repository root).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${WETOK_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

locks=("$root/requirements.lock")
[ "${1:-}" = "--test" ] && locks+=("$root/requirements-test.lock")

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating virtual environment in $venv" >&2
  "$python" -m venv "$venv"
fi

stamp="$venv/.wetok-setup-stamp"
want="$(cat "${locks[@]}" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && grep -qx "$want" "$stamp"; then
  exit 0
fi

# pip prints a warning per package for configured local mirror folders that do not exist; drop those.
pip_install() {
  "$venv/bin/python" -m pip --disable-pip-version-check -q install "$@" 2>&1 | { grep -v "^WARNING: Location" || true; } >&2
  return "${PIPESTATUS[0]}"
}
echo "setup: installing pinned dependencies (first run takes about a minute)" >&2
pip_install "setuptools>=68" wheel
for lock in "${locks[@]}"; do
  pip_install -r "$lock"
done
pip_install --no-deps --no-build-isolation -e "$root"
echo "$want" >> "$stamp"
