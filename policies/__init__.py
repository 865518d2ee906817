"""Policy files that pysandbox and pyaudit enforce."""
