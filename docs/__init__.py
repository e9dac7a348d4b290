"""docs/ ships inside the package as firebreak.docs: the daemon serves runbook.md at /runbook."""
