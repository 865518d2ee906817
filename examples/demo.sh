#!/bin/sh
# The product on the built-in example, end to end, each command shown before it runs:
# build the busybox example image, inspect it (every digest verified), unpack it, lint and
# compare the built-in policies, audit the image. Then it runs the image in the sandbox (under
# permissive until signing lands: strict requires a verified signature).
set -eu
cd "$(dirname "$0")/.."
python=${PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3 )}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q -e .
.venv/bin/python -m compileall -q images sandbox audit policies signing >/dev/null
PATH=$PWD/.venv/bin:$PATH
out=demo
rm -rf "$out" && mkdir -p "$out"
show() { printf '\n$ %s\n' "$*"; "$@"; }
show examples/busybox/make-rootfs.sh "$out/rootfs"
show pysandbox image build "$out/rootfs" --output "$out/busybox.tar" --format docker-archive \
    --tag example/busybox:1 --user 1000:1000 --cmd /bin/sh --workdir /home/app
show pysandbox image inspect "$out/busybox.tar"
show pysandbox image unpack "$out/busybox.tar" "$out/unpacked"
show pysandbox policy lint strict baseline permissive
show pysandbox policy diff baseline strict || true
show pyaudit "$out/busybox.tar" --fail-on high
show pysandbox run --rm --policy permissive "$out/busybox.tar" \
    sh -c 'id; grep -E "CapEff|NoNewPrivs|Seccomp:" /proc/self/status; ps'
show "$out/unpacked/bin/busybox" echo "the unpacked busybox runs"
