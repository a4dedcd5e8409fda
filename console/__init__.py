"""The operator console: a server-rendered web UI over the same storage as the API."""
