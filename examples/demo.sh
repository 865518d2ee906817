#!/bin/sh
# The product on the built-in example, end to end, each command shown before it runs:
# build the busybox example image, inspect it (every digest verified), unpack it, lint and
# compare the built-in policies, make a key and sign the image, audit it, verify it, run it
# under a policy that extends strict, explain what it refuses, learn a policy from a command;
# then change one byte of a copy (USER 1000 -> 0000, root)
# and watch it be refused.
set -eu
cd "$(dirname "$0")/.."
python=${PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3 )}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q -e . --config-settings editable_mode=compat
.venv/bin/python -m compileall -q pysbx images sandbox audit policies signing cli >/dev/null
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
show pysandbox keygen --no-password --output-key-prefix "$out/demo"
show pysandbox sign "$out/busybox.tar" --key "$out/demo.key"
show pyaudit "$out/busybox.tar" --policy examples/demo-policy.yaml --fail-on high
show pysandbox verify "$out/busybox.tar" --policy examples/demo-policy.yaml
# As root, containers run on an id range reserved for pysandbox (once per host; kept if sound).
[ "$(id -u)" != 0 ] || show pysandbox system setup-ids
show pysandbox run --rm --policy examples/demo-policy.yaml "$out/busybox.tar" \
    sh -c 'id; grep -E "CapEff|NoNewPrivs|Seccomp:" /proc/self/status; ps; touch /x || echo "the root is read-only"'
# Why a call is refused, and the policy diff that would allow it (never applied).
show pysandbox run --rm --policy examples/demo-policy.yaml --explain "$out/busybox.tar" \
    sh -c 'mount -t tmpfs none /tmp || echo "mount refused"'
# A policy learned from a workload: the profile cut to the calls it made, linted, replayed.
show pysandbox learn --base examples/demo-policy.yaml -o "$out/learned.yaml" --compare-output "$out/busybox.tar" \
    sh -c 'ls /; id'
# A copy whose config was edited by one byte to run as root (USER 1000:1000 -> 0000:1000): the
# signature names the original manifest, which names the original config, so the run is
# refused before anything is unpacked. (A flipped byte in a layer that earlier runs cached
# changes nothing that runs: layers are content-addressed and the cached tree was verified.)
cp "$out/busybox.tar" "$out/tampered.tar" && cp "$out/busybox.tar.sigstore.json" "$out/tampered.tar.sigstore.json"
python3 - "$out/tampered.tar" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    data = f.read(); at = data.index(b'"User":"1000:1000"') + len(b'"User":"')
    f.seek(at); f.write(b"0")
PY
show sh -c "pysandbox run --rm --policy examples/demo-policy.yaml $out/tampered.tar true; echo exit code \$?"
show "$out/unpacked/bin/busybox" echo "the unpacked busybox runs"
