"""The ground floor, imported by every other package and importing none of them: settings,
ids, logging and redaction, secrets, Redis, metrics, caches, task and queue names, the broker,
the HTTP wire, traces and the state directory. The `connxt` command lives in commands/."""
