"""Where fithub keeps its data, and which database it talks to.

Order of precedence for each: the command-line option, then the environment
(``FITHUB_HOME``, ``FITHUB_DATABASE_URL``), then the default: ``$XDG_DATA_HOME/fithub``
(``~/.local/share/fithub``) and a SQLite file inside it.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_home(option: str | None = None) -> Path:
    if option:
        return Path(option).expanduser()
    if os.environ.get("FITHUB_HOME"):
        return Path(os.environ["FITHUB_HOME"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "fithub"


def database_url(option: str | None, home: Path) -> str:
    url = option or os.environ.get("FITHUB_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{home / 'fithub.db'}"
