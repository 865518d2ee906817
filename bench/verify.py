"""Benchmark: signature verification, cold and warm, against sigstore-python's own CLI.

  * cold, keyless: one sigstore bundle (sigstore-conformance's `happy-path-v0.3`, a message
    signature over `a.txt` by the conformance beacon's GitHub Actions identity), the same
    public-good trusted root (the one sigstore-python carries or has cached), offline, the
    process started each time (hyperfine): `sigstore verify identity --offline` against
    `pysandbox conformance verify-bundle`, which runs signing/ (parse, route, sigstore-python's
    Verifier with our identity policy);
  * cold, public key: `pysandbox verify IMAGE --key` on a key-signed busybox archive (no peer
    in the venv verifies public-key bundles; shown for scale);
  * warm: what `pysandbox run` does instead of verifying again once it has verified an image
    under a policy: `sandbox.warm.load_plan`, the cached-plan check (the image file's and the
    policy files' identities, the cached layers). Timed in-process, as it runs inside the warm
    start (whose whole cost bench/run.py measures).

    .venv/bin/python bench/verify.py [--runs N] [--no-append]

Needs ../shared/testdata/sigstore-conformance, hyperfine and busybox-static; the warm part runs
one real `pysandbox run` to leave the plan (as root its cache is bench/work/verify/state).

Goals from the issue: cold no slower than `sigstore verify`; warm under 5 ms."""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import time
from pathlib import Path

import benchlib as b

W = b.WORK / "verify"
CASES = b.REPO.parent / "shared" / "testdata" / "sigstore-conformance" / "bundle-verify"
CASE = CASES / "happy-path-v0.3"
IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
ISSUER = "https://token.actions.githubusercontent.com"
BIN = b.REPO / ".venv" / "bin"
IMAGE = W / "busybox.tar"
POLICY = W / "signed.yaml"
STATE = W / "state"
GOAL_WARM = 0.005


def keyless_commands() -> list[tuple[str, str]]:
    bundle, artifact = b.q(str(CASE / "bundle.sigstore.json")), b.q(str(CASES / "a.txt"))
    identity, issuer = shlex.quote(IDENTITY), shlex.quote(ISSUER)
    peer = f"verify identity --offline --bundle {bundle} --cert-identity {identity} --cert-oidc-issuer {issuer}"
    ours = f"verify-bundle --bundle {bundle} --certificate-identity {identity} --certificate-oidc-issuer {issuer}"
    return [
        ("sigstore verify identity --offline", f"{b.q(BIN / 'sigstore')} {peer} {artifact}"),
        ("pysandbox conformance verify-bundle", f"{b.q(BIN / 'pysandbox')} conformance {ours} {artifact}"),
    ]


def signed_image() -> None:
    """A busybox archive signed with a fresh key (sidecar bundle) and a policy that trusts
    the key and requires a signature: what `pysandbox run` verifies cold, then caches."""
    if IMAGE.exists() and POLICY.exists():
        return
    from pysbx.images import open_image
    from pysbx.images.writer import NewImage, NewLayer, tar_from_directory, write_docker_archive
    from pysbx.signing.keys import generate_key_pair, load_private_key
    from pysbx.signing.sign import sign_image, write_bundle_file

    W.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(b.REPO / "examples/busybox/make-rootfs.sh"), str(W / "rootfs")], check=True)
    image = NewImage([NewLayer(tar_from_directory(W / "rootfs"), "gzip", "COPY rootfs /")], {"Cmd": ["/bin/true"]})
    write_docker_archive(IMAGE, image, ["bench/verify:1"])
    pair = generate_key_pair()
    (W / "bench.key").write_bytes(pair.private_pem)
    (W / "bench.pub").write_bytes(pair.public_pem)
    signed = sign_image(open_image(str(IMAGE)), load_private_key(W / "bench.key"))
    write_bundle_file(signed, Path(str(IMAGE) + ".sigstore.json"))
    POLICY.write_text("version: 1\nextends: strict\nsigning:\n  keys: [bench.pub]\n")


def warm_check(samples: int) -> tuple[float, float, str]:
    """Leave a plan with one real cold run, then time `load_plan` (median, p99 in seconds)."""
    environment = {**os.environ, "PYSANDBOX_STATE": str(STATE)}
    cold = [str(BIN / "pysandbox"), "run", "--policy", str(POLICY), str(IMAGE), "/bin/true"]
    done = subprocess.run(cold, env=environment, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the cold run failed ({done.returncode}): {done.stderr.strip()}")
    os.environ["PYSANDBOX_STATE"] = str(STATE)
    from pysbx.sandbox import warm

    if warm.load_plan(str(IMAGE), str(POLICY)) is None:
        raise SystemExit("the cold run left no plan: nothing warm to measure")
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        warm.load_plan(str(IMAGE), str(POLICY))
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1], shlex.join(cold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=2000, help="in-process timings of the warm check")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if not CASE.is_dir():
        raise SystemExit(f"{CASE} is absent: the sigstore-conformance cases come from ../shared/testdata")
    signed_image()
    key_command = (
        "pysandbox verify IMAGE --key (public key)",
        f"{b.q(BIN / 'pysandbox')} verify {b.q(IMAGE)} --key {b.q(W / 'bench.pub')}",
    )
    W.mkdir(parents=True, exist_ok=True)
    with b.machine_lock():
        measured, argv, load = b.measure([*keyless_commands(), key_command], "", W / "cold.json", 2, args.runs)
        median, p99, cold_run = warm_check(args.samples)
    peer, ours, keyed = measured
    rows = [[m.name, b.fmt_s(m.median * 1000), b.fmt_s(m.mean * 1000), b.fmt_s(m.stddev * 1000)] for m in measured]
    ratio = ours.median / peer.median
    body = "\n".join(
        [
            "Cold: one process per verification, offline, same bundle (sigstore-conformance `happy-path-v0.3`) "
            f"and the same public-good trusted root; hyperfine --warmup 2 --runs {args.runs}. {load}.",
            "",
            b.table(["command", "median ms", "mean ms", "stddev ms"], rows),
            "",
            f"- cold keyless: pysandbox / sigstore = **{ratio:.2f}x** "
            f"({'goal met' if ratio <= 1.0 else 'goal missed'}: no slower than `sigstore verify`).",
            f"- public-key image verification (no peer): {keyed.median * 1000:.0f} ms, interpreter start included.",
            f"- warm: the cached-plan check `sandbox.warm.load_plan` that replaces verification on a warm "
            f"`pysandbox run`: median **{median * 1e3:.3f} ms**, p99 {p99 * 1e3:.3f} ms over {args.samples} calls "
            f"({'goal met' if p99 < GOAL_WARM else 'goal missed'}: under 5 ms). The plan was left by `{cold_run}`.",
        ]
    )
    print(body)
    if not args.no_append:
        b.append_results("Signature verification: cold and warm, against sigstore verify", body, [shlex.join(argv)])


if __name__ == "__main__":
    main()
