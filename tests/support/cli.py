"""The `connxt` command as a shell sees it (exit status, standard output, standard error),
run inside the test process: a fresh interpreter spends about 1.7 CPU-seconds importing
before it does anything, and the suite runs commands dozens of times.

Log lines are not in what it returns: the process's logging stays as the suite set it up,
writing where it did. A test about a command's process itself (its command line, its logs,
a kill mid-run, another directory or key) starts it as a process instead.
"""

from __future__ import annotations

import io
import subprocess
from contextlib import redirect_stderr, redirect_stdout

from commands.cli import run


def cli(*args: str) -> subprocess.CompletedProcess:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            run(list(args))
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:  # sys.exit("why"): the interpreter prints it and exits 1
                print(exit_.code, file=err)
                code = 1
    return subprocess.CompletedProcess(["connxt", *args], code, out.getvalue(), err.getvalue())
