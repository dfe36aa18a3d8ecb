"""The plugin factories a config may name, in one shape whatever their origin.

``load(plugins=...)`` and ``example(plugins=...)`` accept ``{group: {type: x}}``
where ``x`` is a factory, a :class:`hub.plugins.PluginInfo` (as ``discover``
returns) or a string (why the plugin failed to load, the daemon's convention).
A group left out of the mapping is discovered from the installed entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config_options import PLUGIN_GROUPS
from .options import Option


@dataclass(frozen=True)
class Available:
    factory: Any = None
    error: str | None = None  # why it did not load
    builtin: bool = True  # shipped with fithub (shown in the example config)

    def options(self) -> tuple[dict[str, Option], str | None]:
        """The plugin's declared keys, or a problem when its ``OPTIONS`` is malformed
        (a plugin bug must show up as a config problem, not a crash)."""
        declared = getattr(self.factory, "OPTIONS", None) or {}
        if not isinstance(declared, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Option) for k, v in declared.items()
        ):
            return {}, "declares OPTIONS that are not a mapping of key names to hub.options.Option"
        return dict(declared), None


Registry = dict[str, dict[str, Available]]


def registry(plugins: Mapping[str, Mapping[str, Any]] | None) -> Registry:
    found: Registry = {}
    for group in PLUGIN_GROUPS:
        if plugins is not None and group in plugins:
            found[group] = {name: _available(x) for name, x in plugins[group].items()}
        else:
            from .plugins import discover  # imports entry points: only when needed

            found[group] = {name: _available(info) for name, info in discover(group).items()}
    return found


def _available(x: Any) -> Available:
    from .plugins import PluginInfo

    if isinstance(x, PluginInfo):
        # Injected PluginInfos say themselves whether they are built in.
        if x.loaded is None:
            return Available(None, x.error or "did not load", x.builtin)
        return Available(x.loaded, None, x.builtin)
    if isinstance(x, str):
        return Available(None, x)
    if x is None:
        return Available(None, "no factory")
    return Available(x, None, True)
