#!/bin/sh
# Create (or reuse) .venv with the project and its test extras, then run the whole suite.
# Debian's /usr/bin/python3 is preferred: the tests also run the tools as an ordinary
# user, who cannot reach an interpreter under /root (pyenv).
set -eu
cd "$(dirname "$0")/.."
python=${PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3 )}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest "$@"
