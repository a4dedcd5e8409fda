"""wrk, the load generator: installed when missing, run with bench/lua/load.lua, measured.

wrk is C with an event loop per thread, so on this 2-core machine it costs a fraction of
what it measures; its own CPU (from the kernel's rusage of the finished process) is
reported beside every figure so that fraction stays visible.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "lua" / "load.lua"
THREADS = 2  # one per core
MARKER = "BENCH_RESULT "


def ensure_wrk() -> str:
    """The wrk binary; Debian's package is installed with apt-get when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise SystemExit("wrk is not installed: `apt-get install wrk` (Debian/Ubuntu), then rerun")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "wrk"]):
        subprocess.run(args, check=True, env=env, stdin=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get install wrk did not provide a wrk binary")
    return found


@dataclass
class Load:
    """What one wrk run is asked to do (see the header of bench/lua/load.lua)."""

    url: str  # base URL, e.g. http://127.0.0.1:8000
    path: str
    file: Path  # the body template, or the lines
    expect: str = "2xx"
    mode: str = "template"
    headers: dict[str, str] = field(default_factory=dict)
    per_request_header: str | None = None  # "Name: value" with @N@ / @V@
    connections: int = 16
    duration_s: int = 10
    limit: int = 0
    delay_ms: int = 0
    timeout_s: float = 30.0
    tag: str = "run"
    capture: Path | None = None  # directory for "<referenceId>\t<id>" lines of answers


@dataclass
class WrkResult:
    ok: int
    answered: int
    duration_s: float
    outcomes: dict[str, int]
    errors: dict[str, int]
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    cpu_s: float  # wrk's own user + system time
    wraps: int = 0
    unanswered: int = 0  # sent, and still without an answer when the run ended

    @property
    def rate(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "answered": self.answered,
            "duration_s": round(self.duration_s, 3),
            "rate": round(self.rate, 1),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "outcomes": self.outcomes,
            "errors": {k: v for k, v in self.errors.items() if v},
            "wraps": self.wraps,
            "unanswered": self.unanswered,
            "wrk_cpu_s": round(self.cpu_s, 2),
        }

    def not_ok(self) -> dict[str, int]:
        """Answers that did not count, and transport errors, by kind."""
        bad = {k: v for k, v in self.outcomes.items() if k != "ok"}
        bad.update({f"socket {k}": v for k, v in self.errors.items() if v and k != "status"})
        # Every closed-loop run ends with its connections' last requests in flight; that
        # counts as a refusal only when it outnumbers what was answered.
        if self.unanswered > self.ok:
            bad["no answer by the end"] = self.unanswered
        return bad


@dataclass
class Running:
    proc: subprocess.Popen
    out: Path
    done_dir: Path
    interrupted: bool = False


def start(load: Load) -> Running:
    """Launch wrk; ``finish`` collects it. Lets a caller watch other things meanwhile."""
    out = Path(tempfile.mkstemp(prefix="bench-wrk-", suffix=".out")[1])
    done_dir = Path(tempfile.mkdtemp(prefix="bench-wrk-done-"))
    args = [
        ensure_wrk(),
        f"-t{THREADS}",
        f"-c{load.connections}",
        f"-d{max(round(load.duration_s), 1)}s",  # wrk takes whole seconds
        f"--timeout={load.timeout_s:.0f}s",
        "-s",
        str(SCRIPT),
    ]
    for name, value in {"Content-Type": "application/json", **load.headers}.items():
        args += ["-H", f"{name}: {value}"]
    args.append(load.url.rstrip("/") + load.path)
    env = {
        **os.environ,
        "BENCH_PATH": load.path,
        "BENCH_MODE": load.mode,
        "BENCH_FILE": str(load.file),
        "BENCH_EXPECT": load.expect,
        "BENCH_LIMIT": str(load.limit),
        "BENCH_DELAY_MS": str(load.delay_ms),
        "BENCH_THREADS": str(THREADS),
        "BENCH_TAG": load.tag,
        "BENCH_DONE_DIR": str(done_dir),
    }
    if load.per_request_header:
        env["BENCH_HEADER"] = load.per_request_header
    if load.capture:
        env["BENCH_CAPTURE"] = str(load.capture)
    with out.open("wb") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=env)
    return Running(proc, out, done_dir)


def finish(running: Running) -> WrkResult:
    while (result := poll(running)) is None:
        time.sleep(0.02)
    return result


def poll(running: Running) -> WrkResult | None:
    """The result once wrk has exited, else None (never blocks)."""
    proc = running.proc
    # wait4 rather than wait: the rusage of this one child is wrk's own CPU, exactly.
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if not pid:
        # wrk sleeps out its whole -d even when every thread has stopped; SIGINT ends the
        # sleep and it reports at once.
        if not running.interrupted and len(list(running.done_dir.iterdir())) >= THREADS:
            proc.send_signal(signal.SIGINT)
            running.interrupted = True
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    shutil.rmtree(running.done_dir, ignore_errors=True)
    text = running.out.read_text(errors="replace")
    running.out.unlink(missing_ok=True)
    line = next((ln for ln in text.splitlines() if ln.startswith(MARKER)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}):\n{text[-2000:]}")
    data = json.loads(line[len(MARKER) :])
    # Nothing answered: wrk's percentiles are zeros, which would read as instant answers.
    lat = {k: (v if data["answered"] else None) for k, v in data["latency_us"].items()}
    return WrkResult(
        ok=data["ok"],
        answered=data["answered"],
        duration_s=data["duration_us"] / 1e6,
        outcomes=dict(sorted(data["outcomes"].items())),
        errors=data["errors"],
        p50_ms=_ms(lat["p50"]),
        p90_ms=_ms(lat["p90"]),
        p99_ms=_ms(lat["p99"]),
        max_ms=_ms(lat["max"]),
        cpu_s=usage.ru_utime + usage.ru_stime,
        wraps=data["wraps"],
        # In lines mode a repeat is a send too; what matters is what went unanswered.
        unanswered=max(0, data["sent"] - data["answered"]),
    )


def _ms(microseconds: float | None) -> float | None:
    return None if microseconds is None else round(microseconds / 1000, 2)


def interrupt(running: Running) -> WrkResult:
    """End a run before its duration (as Ctrl-C does: wrk reports what it has)."""
    # No Popen.poll() here: it would reap wrk and take its rusage with it.
    if not running.interrupted:
        running.proc.send_signal(signal.SIGINT)
        running.interrupted = True
    return finish(running)


def run(load: Load) -> WrkResult:
    return finish(start(load))
