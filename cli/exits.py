"""Exit status 2, defined once: a usage or input error of pyaudit, the policy tools and
verify (run's own is 125, pysbx.sandbox.errors.EXIT_SETUP_FAILED). No imports: `conformance`
reads it without a CLI framework."""

EXIT_BAD_INPUT = 2
