"""A command run as a person runs it in a terminal: a pseudo-terminal of its own as its
controlling terminal, in a session of its own, so Ctrl-C is what a terminal makes of it
(SIGINT to the terminal's foreground process group, from the line discipline).

Every process the command starts carries a marker in its environment, so what is left
afterwards can be found whatever session or process group it moved to.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path

MARKER = "CONNXT_TERMINAL_TEST"
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _default_signals() -> None:
    """A shell in a new terminal starts with Ctrl-C and hang-up at their defaults. A suite
    started in the background (``cmd &`` in a script ignores SIGINT and SIGQUIT, ``nohup``
    SIGHUP) would otherwise hand its ignored signals down, and a shell cannot trap a
    signal that was ignored when it started."""
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


class Terminal:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | Path):
        self.mark = secrets.token_hex(8)
        master, slave = os.openpty()
        self._master = master
        self._output = bytearray()
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            # setsid --ctty: a new session whose controlling terminal is this pty.
            ["setsid", "--ctty", *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, MARKER: self.mark},
            cwd=cwd,
            close_fds=True,
            preexec_fn=_default_signals,
        )
        os.close(slave)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._output += chunk

    @property
    def output(self) -> str:
        with self._lock:
            return _ANSI.sub(b"", bytes(self._output)).decode(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                time.sleep(0.5)  # the last of its output
                raise AssertionError(f"exited ({self.proc.returncode}) before {text!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout} s")
            time.sleep(0.2)

    def ctrl_c(self) -> None:
        """What pressing Ctrl-C does: the interrupt character, typed into the terminal."""
        os.write(self._master, b"\x03")

    def processes(self) -> list[tuple[int, str]]:
        """(pid, command line) of every live process started from this terminal."""
        found = []
        needle = f"{MARKER}={self.mark}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if needle not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # exited, waiting to be reaped: nothing left running
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found.append((int(entry.name), cmdline.strip()))
        return found

    def signal_state(self) -> str:
        """Who a Ctrl-C reaches, for a failure's message: the terminal's foreground process
        group, and each left process's group with the signals it blocks and ignores."""
        lines = []
        with contextlib.suppress(OSError):
            lines.append(f"foreground group {os.tcgetpgrp(self._master)}")
        for pid, cmdline in self.processes():
            with contextlib.suppress(OSError):
                status = dict(
                    line.split(":\t", 1)
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if ":\t" in line
                )
                lines.append(
                    f"{pid} group {os.getpgid(pid)} blocked {status.get('SigBlk')} "
                    f"ignored {status.get('SigIgn')} caught {status.get('SigCgt')}: {cmdline[:60]}"
                )
        return "\n".join(lines)

    def close(self) -> None:
        """Whatever is left is killed (a test that failed must not leave a service up)."""
        for pid, _ in self.processes():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self._master)
