"""The `connxt` command and what only it runs: the demo, operator actions, supervision.

On top of every other package (docs/ARCHITECTURE.md §7.1): nothing imports it back.
"""
