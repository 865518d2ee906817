"""pysandbox: run container images rootless, confined as a policy says."""
