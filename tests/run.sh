#!/bin/sh
# Create (or reuse) .venv with the project and its test extras, then run the whole suite.
# Debian's /usr/bin/python3 is preferred: the tests also run the tools as an ordinary
# user, who cannot reach an interpreter under /root (pyenv).
set -eu
cd "$(dirname "$0")/.."
python=${PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3 )}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# editable_mode=compat: the project folder as a plain .pth path, not setuptools' import hook,
# which costs every `pysandbox run` about 9 ms of start-up.
.venv/bin/python -m pip install -q -e '.[test]' --config-settings editable_mode=compat
# An editable install compiles nothing, and PYTHONDONTWRITEBYTECODE may forbid caching at
# import time: compile once, so that start-up measured by the tests is start-up.
.venv/bin/python -m compileall -q pysbx images sandbox audit policies signing cli >/dev/null
exec .venv/bin/python -m pytest "$@"
