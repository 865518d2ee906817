"""The command-line front ends: `pysandbox` (cli.pysandbox_app, with `run` read by
cli.run_cmd without a CLI framework) and `pyaudit` (cli.pyaudit_app), one module per command
group over one kit (cli.kit: exit codes, one-line errors, the version). They parse and print;
the work lives in the library packages (images, policies, signing, sandbox, audit), which
import nothing from here.

Empty of code on purpose: a warm `pysandbox run` imports this package (bin/pysandbox ->
cli.entry -> cli.run_cmd -> cli.runargs) and pays for nothing it does not use."""
