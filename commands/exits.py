"""The `connxt` command's exit codes: none collides with argparse's 2 (a usage error).

Every error goes to stderr, one sentence; a script tells what happened by the code alone.
"""

OK = 0
FAILED = 1  # refused, or not done (a lock busy, nothing held for review, ...)
USAGE = 2  # argparse: a wrong option or argument
KEY_MISMATCH = 3  # the key ring cannot open what the database holds
NOT_FOUND = 4  # no such transaction, inbox message, brand/environment
CONFIG = 5  # the settings are wrong (a key ring that does not parse, production without keys)


def fail(message: str, code: int = FAILED) -> int:
    """Say why on stderr; the code to exit with."""
    import sys

    print(message, file=sys.stderr)
    return code
