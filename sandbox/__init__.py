"""pysandbox: run container images rootless, confined as a policy says.

The warm start of `pysandbox run` (a plan cached, nothing to verify or unpack) imports only
these modules of the project, and of the standard library nothing slow
(tests/sandbox/test_warm.py holds both lists); every other module may import anything:

    cli, cli.entry, cli.run_cmd, cli.runargs,
    sandbox, sandbox.capabilities, sandbox.errors, sandbox.idmap, sandbox.inuse, sandbox.layercopy,
    sandbox.limits, sandbox.linux, sandbox.mounts, sandbox.names, sandbox.network, sandbox.planrecord,
    sandbox.process, sandbox.procfs, sandbox.runner, sandbox.seccomp,
    sandbox.signals, sandbox.state, sandbox.userns, sandbox.warm,
    sandbox._syscall (the C extension, where it was built),
    sandbox.syscall_ctypes (where it was not), sandbox.cgroups (when a limit needs a
    cgroup), sandbox.tty (with -t), sandbox.plan_light (with --tmpfs)

Of the policies package, it imports policies.capnames and policies.record: plain data and the
Record base class, which the policy model and the auditor share. This package's __init__ stays
empty of code: each of them pays only for itself."""
