"""Use cases called by pages and the CLI: each owns its transaction (compute -> persist -> audit log)."""
