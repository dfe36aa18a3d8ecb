"""Where fithub keeps its data, and which database it talks to.

Order of precedence for each: the command-line option, then the environment
(``FITHUB_HOME``, ``FITHUB_DATABASE_URL``), then the default: ``$XDG_DATA_HOME/fithub``
(``~/.local/share/fithub``) and a SQLite file inside it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def data_home(option: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    # env: the environment to read (the config loader passes an injected one in tests).
    env = os.environ if env is None else env
    if option:
        return Path(option).expanduser()
    if env.get("FITHUB_HOME"):
        return Path(env["FITHUB_HOME"]).expanduser()
    user_home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    xdg = env.get("XDG_DATA_HOME") or str(user_home / ".local" / "share")
    return Path(xdg) / "fithub"


def database_url(option: str | None, home: Path) -> str:
    url = option or os.environ.get("FITHUB_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{home / 'fithub.db'}"
