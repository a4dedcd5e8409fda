"""Cross-cutting pieces shared by every process: settings, ids, logging, secrets, the CLI."""
