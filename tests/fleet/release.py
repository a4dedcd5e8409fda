"""The previous release's code, checked out with a virtualenv of its own, for a fleet to run.

The rolling-deploy test starts a fleet on the last release (storage.schema_changes.
LAST_RELEASE names its tag) and upgrades it to this checkout. The release is exported with
``git archive`` of the tag's commit into ``/tmp/connxt-release-<commit>`` and installed
there as the image installs it (``.[ops,otel]``, in a .venv of its own); the directory is
kept and found again by the commit, so only the first run on a machine pays for it (about
a minute and a half on two busy cores, mostly pip). A half-built directory never counts:
the build happens under a lock and counts only once its marker is written.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from storage.schema_changes import LAST_RELEASE, Release

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CONNXT_RELEASE_CACHE", tempfile.gettempdir()))
READY = ".venv/.connxt-release-ready"


class ReleaseError(RuntimeError):
    """The release could not be checked out or installed; the message says why."""


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def release_commit(release: Release) -> str:
    """The tag's commit. A clone made without tags has it still, as an ancestor of main;
    where the tag exists it must be that commit."""
    try:
        tagged = _git("rev-parse", "--verify", "--quiet", f"{release.tag}^{{commit}}")
    except ReleaseError:
        tagged = ""
    if tagged and tagged != release.commit:
        raise ReleaseError(f"{release.tag} is {tagged}, LAST_RELEASE says {release.commit}")
    return _git("rev-parse", "--verify", f"{release.commit}^{{commit}}")


def _run(argv: list[str], cwd: Path, log: Path) -> None:
    with log.open("a") as out:
        done = subprocess.run(
            argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise ReleaseError(f"{' '.join(argv)} failed ({done.returncode}):\n{tail}")


def release_checkout(release: Release = LAST_RELEASE) -> tuple[str, Path]:
    """(tag, directory) of the release's code with its .venv, built once per commit."""
    tag, commit = release.tag, release_commit(release)
    target = CACHE / f"connxt-release-{commit[:12]}"
    if (target / READY).exists():
        return tag, target
    with (CACHE / f"connxt-release-{commit[:12]}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second run waits for the first one's build
        if (target / READY).exists():
            return tag, target
        # Built in place (a virtualenv's scripts name its path, so it cannot be moved after),
        # and ready only once the marker is written: a build that died is started over.
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        log = target.with_suffix(".log")
        log.unlink(missing_ok=True)
        try:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
                capture_output=True,
                check=True,
                timeout=120,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
            # The suite's interpreter: the Python the project runs on here.
            _run([sys.executable, "-m", "venv", ".venv"], target, log)
            pip = [str(target / ".venv/bin/python"), "-m", "pip", "-q"]
            pip += ["--disable-pip-version-check", "--no-input"]
            _run([*pip, "install", "--upgrade", "pip"], target, log)
            # Editable, as deploy/bootstrap.sh installs a checkout: the fleet runs the code
            # from this directory (CONNXT_FLEET_CODE); the image's extras.
            _run([*pip, "install", "-e", ".[ops,otel]"], target, log)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        (target / READY).write_text(f"{tag} {commit}\n")
        log.unlink(missing_ok=True)
    return tag, target
