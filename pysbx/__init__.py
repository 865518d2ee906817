"""pysandbox and pyaudit under one import namespace. Its subpackages are the repository's
top-level folders (audit, cli, images, policies, sandbox, signing), linked here, so that an
installation adds one name to site-packages, not six generic ones. Empty on purpose: every
`pysandbox run` imports it."""
