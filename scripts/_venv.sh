# Sourced by demo.sh and test.sh: make .venv (once) and install the project into it.
# EXTRAS names the optional dependencies to install, e.g. "test".
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PYTHON" -m venv "$ROOT/.venv"
fi
# shellcheck disable=SC1091
. "$ROOT/.venv/bin/activate"
stamp="$ROOT/.venv/.installed-${EXTRAS:-base}"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    python -m pip install -q --upgrade pip
    python -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}"
    touch "$stamp"
fi
