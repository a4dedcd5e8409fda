"""Where a process keeps local state, whatever directory it was started from.

Development keeps two things on disk: the generated encryption key (when
``CONNXT_ENCRYPTION_KEYS`` is unset) and whatever the scripts keep beside it (the demo
tenant, the console's operator token). A path relative to the working directory made
``connxt tenants create``, run from another directory, generate a second key and seal the
tenant's notification secret with it; so the directory is found the same way by every
process:

1. ``CONNXT_STATE_DIR``, when set;
2. in a source checkout (the code runs from a tree with ``pyproject.toml`` beside its
   packages, as ``make run`` and an editable install do), that checkout's ``.connxt/``;
3. otherwise the user's state directory, ``$XDG_STATE_HOME/connxt`` (``~/.local/state``).
"""

from __future__ import annotations

import os
from pathlib import Path

from connxt.settings import Settings

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def state_dir(settings: Settings) -> Path:
    if settings.state_dir:
        return Path(settings.state_dir).expanduser().resolve()
    if (_PACKAGE_ROOT / "pyproject.toml").is_file() and (_PACKAGE_ROOT / "connxt").is_dir():
        return _PACKAGE_ROOT / ".connxt"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "connxt"


def local_key_path(settings: Settings) -> Path:
    """The development key's file: ``CONNXT_LOCAL_KEY_FILE`` (absolute, or relative to the
    state directory), else ``encryption.key`` in the state directory."""
    if settings.local_key_file:
        path = Path(settings.local_key_file).expanduser()
        return path if path.is_absolute() else state_dir(settings) / path
    return state_dir(settings) / "encryption.key"
