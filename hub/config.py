"""The hub's configuration: one TOML file, laid over built-in defaults, then the
environment; validated as a whole so every problem is reported at once.

Layers, later wins:

1. built-in defaults (:data:`HUB_OPTIONS`, and one source ``inbox`` of type ``watch``);
2. the file: ``load(path)``, else ``$FITHUB_CONFIG``, else the first that exists of
   ``<home>/config.toml``, ``$XDG_CONFIG_HOME/fithub/config.toml``,
   ``/etc/fithub/config.toml``; none at all is fine (defaults only);
3. environment overrides ``FITHUB_<SECTION>__<KEY>`` and
   ``FITHUB_<SOURCES|SINKS|NOTIFIERS>__<NAME>__<KEY>`` (case-insensitive),
   converted per the key's kind and validated like file values.

``FITHUB_HOME`` and ``FITHUB_DATABASE_URL`` are the defaults of ``hub.home`` and
``hub.database`` (the file may set others); ``FITHUB_HUB__HOME`` /
``FITHUB_HUB__DATABASE`` override the file like any other key.

Each plugin section is validated against its plugin's ``OPTIONS`` and the plugin
later receives only that section (:attr:`PluginSection.options`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .config_options import (
    COMMON_OPTIONS,
    DEFAULT_SOURCES,
    HUB_OPTIONS,
    ORDERED_PAIRS,
    PLUGIN_GROUPS,
    source_options,
)
from .config_registry import Registry, registry
from .config_values import check, default_of, from_env, show, suggest
from .errors import ConfigError
from .options import Option

SYSTEM_CONFIG = Path("/etc/fithub/config.toml")
# Variables that look like ours but are not FITHUB_<SECTION>__<KEY> overrides.
NOT_OVERRIDES = frozenset({"FITHUB_HOME", "FITHUB_DATABASE_URL", "FITHUB_CONFIG"})
# Section names end up in the database (source_state, outbox_consumers) and in
# dotted keys and variable names: keep them plain.
_NAME = re.compile(r"[A-Za-z0-9_-]+")

__all__ = ["HUB_OPTIONS", "Config", "ConfigProblems", "PluginSection", "default_paths", "example", "load"]


class ConfigProblems(ConfigError):
    """Every problem found in one configuration, one per line in the message."""

    def __init__(self, problems: list[str], path: Path | None = None) -> None:
        self.problems = list(problems)
        self.path = path
        where = str(path) if path else "the built-in defaults and the environment"
        if len(self.problems) == 1 and path is not None and self.problems[0].startswith(str(path)):
            text = self.problems[0]  # a file-level problem already names the file
        else:
            count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
            text = f"invalid configuration in {where} ({count}):\n" + "\n".join(f"  {p}" for p in self.problems)
        super().__init__(text)


@dataclass(frozen=True)
class PluginSection:
    name: str
    group: str  # "sources", "sinks", "notifiers"
    type: str
    enabled: bool
    options: dict[str, Any]  # the plugin's own keys, validated, defaults filled in


@dataclass(frozen=True)
class Config:
    path: Path | None  # the file read, None for built-in defaults only
    hub: dict[str, Any]
    http: dict[str, Any]
    outbox: dict[str, Any]
    dedupe: dict[str, Any]
    sources: dict[str, PluginSection]
    sinks: dict[str, PluginSection]
    notifiers: dict[str, PluginSection]
    # "sources.x" -> why, for sections whose plugin failed to load when
    # load(skip_broken_plugins=True) let the hub start without them.
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return Path(self.hub["home"])

    @property
    def database_url(self) -> str:
        return self.hub["database"]

    def enabled(self, group: str) -> dict[str, PluginSection]:
        return {name: s for name, s in getattr(self, group).items() if s.enabled and f"{group}.{name}" not in self.skipped}

    @property
    def merge_policy(self):
        """The dedupe MergePolicy, None for the built-in one."""
        from .dedupe import MergePolicy

        return MergePolicy.from_dict(self.dedupe["policy"]) if self.dedupe.get("policy") else None


# -- finding and reading the file ---------------------------------------------


def default_paths(env: Mapping[str, str] = os.environ) -> list[Path]:
    """Where a config file is looked for when none is given, in order."""
    home = paths.data_home(None, env)
    xdg = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return [home / "config.toml", Path(xdg) / "fithub" / "config.toml", SYSTEM_CONFIG]


def find(path: Path | None, env: Mapping[str, str]) -> Path | None:
    """The file to read, or None for built-in defaults. A file asked for by name
    (argument or $FITHUB_CONFIG) must exist: silently running on defaults
    because of a typo would watch the wrong folder."""
    if path is None and env.get("FITHUB_CONFIG"):
        path = Path(env["FITHUB_CONFIG"])
        if not path.is_file():
            raise ConfigProblems([f"{path}: config file (from $FITHUB_CONFIG) does not exist"], path)
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            why = "is a directory, not a config file" if path.is_dir() else "config file does not exist"
            raise ConfigProblems([f"{path}: {why}"], path)
        return path
    return next((p for p in default_paths(env) if p.is_file()), None)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigProblems([f"{path}: cannot read: {exc.strerror or exc}"], path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigProblems([f"{path}: not UTF-8 text (bad byte at offset {exc.start})"], path) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigProblems([_toml_error(path, str(exc))], path) from None


def _toml_error(path: Path, message: str) -> str:
    # tomllib (3.11) puts the position only in the message: "... (at line 3, column 7)".
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", message)
    if m:
        return f"{path}:{m.group(1)}:{m.group(2)}: invalid TOML: {message[: m.start()]} (line {m.group(1)}, column {m.group(2)})"
    m = re.search(r"\s*\(at end of document\)\s*$", message)
    if m:
        return f"{path}: invalid TOML at the end of the file: {message[: m.start()]}"
    return f"{path}: invalid TOML: {message}"


# -- loading --------------------------------------------------------------------


def load(
    path: Path | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    plugins: Mapping[str, Mapping[str, Any]] | None = None,
    skip_broken_plugins: bool = False,
) -> Config:
    """The validated configuration; raises :class:`ConfigProblems` (a ConfigError)
    listing every problem.

    ``plugins``: ``{group: {type: factory | PluginInfo | error string}}``; groups
    left out are discovered from entry points. ``skip_broken_plugins``: a section
    whose plugin is installed but failed to import is recorded in
    :attr:`Config.skipped` instead of being a problem (``fithub run`` keeps going
    without it; ``fithub config check`` reports it).
    """
    file = find(path, env)
    raw = _overlay(_defaults(), read_toml(file) if file else {})
    reg = registry(plugins)
    v = _Validator(env, reg, skip_broken_plugins)
    v.apply_env(raw)
    config = v.build(raw, file)
    if v.problems:
        raise ConfigProblems(v.problems, file)
    return config


def _defaults() -> dict[str, Any]:
    return {"sources": {name: dict(section) for name, section in DEFAULT_SOURCES.items()}}


def _overlay(base: dict[str, Any], file: dict[str, Any]) -> dict[str, Any]:
    """The file over the defaults. A default plugin section the file names again
    with the same (or no) type is extended key by key; with another type it is
    replaced (the user redefined it)."""
    out = dict(base)
    for top, value in file.items():
        if top in PLUGIN_GROUPS and isinstance(value, dict) and isinstance(out.get(top), dict):
            group = dict(out[top])
            for name, section in value.items():
                default = group.get(name)
                if isinstance(section, dict) and isinstance(default, dict) and section.get("type", default.get("type")) == default.get("type"):
                    group[name] = {**default, **section}
                else:
                    group[name] = section
            out[top] = group
        else:
            out[top] = value
    return out


class _Validator:
    """Collects problems while turning the raw layered tables into a Config."""

    def __init__(self, env: Mapping[str, str], reg: Registry, skip_broken: bool) -> None:
        self.env = env
        self.reg = reg
        self.skip_broken = skip_broken
        self.problems: list[str] = []
        self.origins: dict[str, str] = {}  # dotted key -> the variable that set it
        self.skipped: dict[str, str] = {}

    def problem(self, key: str, message: str) -> None:
        origin = self.origins.get(key)
        self.problems.append(f"{key} (from {origin}): {message}" if origin else f"{key}: {message}")

    # -- environment overrides -------------------------------------------------

    def apply_env(self, raw: dict[str, Any]) -> None:
        plugin_keys: list[tuple[str, str, str, str, str]] = []
        for var in sorted(self.env):
            if not var.upper().startswith("FITHUB_") or var.upper() in NOT_OVERRIDES or "__" not in var:
                continue  # FITHUB_HOME, FITHUB_TEST_PG, ...: not ours to interpret
            text = self.env[var]
            parts = [p.lower() for p in var[len("FITHUB_"):].split("__")]
            head = parts[0]
            if head in HUB_OPTIONS and len(parts) == 2 and parts[1]:
                self._env_hub(raw, var, head, parts[1], text)
            elif head in PLUGIN_GROUPS and len(parts) == 3 and parts[1] and parts[2]:
                name = self._instance(raw, head, parts[1])
                if name is None:
                    self.problems.append(f"{var}: [{head}] must be a table of sections; cannot apply")
                elif parts[2] in COMMON_OPTIONS:
                    section = raw[head].setdefault(name, {})
                    if isinstance(section, dict):
                        section[parts[2]] = from_env(COMMON_OPTIONS[parts[2]], text)
                        self.origins[f"{head}.{name}.{parts[2]}"] = var
                else:
                    plugin_keys.append((var, head, name, parts[2], text))  # after every type is known
            elif head in HUB_OPTIONS or head in PLUGIN_GROUPS:
                shape = "FITHUB_<SECTION>__<KEY>" if head in HUB_OPTIONS else f"FITHUB_{head.upper()}__<NAME>__<KEY>"
                self.problems.append(f"{var}: not a setting; expected {shape}")
            else:
                known = [*HUB_OPTIONS, *PLUGIN_GROUPS]
                self.problems.append(f"{var}: unknown config section {head!r}{suggest(head, known)}")
        for var, group, name, key, text in plugin_keys:
            self._env_plugin(raw, var, group, name, key, text)

    def _env_hub(self, raw: dict[str, Any], var: str, section: str, key: str, text: str) -> None:
        spec = HUB_OPTIONS[section]
        if key not in spec:
            self.problems.append(f"{var}: unknown key {section}.{key}{_unknown_hint(key, spec)}")
            return
        table = raw.setdefault(section, {})
        if isinstance(table, dict):  # else the section itself is reported as broken
            table[key] = from_env(spec[key], text)
            self.origins[f"{section}.{key}"] = var

    def _instance(self, raw: dict[str, Any], group: str, lowered: str) -> str | None:
        """The existing section a variable names (case-insensitively), else a new one."""
        table = raw.setdefault(group, {})
        if not isinstance(table, dict):
            return None
        return next((n for n in table if n.lower() == lowered), lowered)

    def _env_plugin(self, raw: dict[str, Any], var: str, group: str, name: str, key: str, text: str) -> None:
        section = raw[group].setdefault(name, {})
        if not isinstance(section, dict):
            return
        spec = self._spec(group, section.get("type"))
        if spec is not None and key not in spec:
            self.problems.append(f"{var}: unknown key {group}.{name}.{key}{_unknown_hint(key, spec)}")
            return
        # With an unknown plugin the type problem is reported; keep the text as is.
        section[key] = from_env(spec[key], text) if spec is not None else text
        self.origins[f"{group}.{name}.{key}"] = var

    def _spec(self, group: str, type_: Any) -> dict[str, Option] | None:
        """Every key a section of this plugin type accepts, None if the plugin is unusable."""
        plugin = self.reg[group].get(type_) if isinstance(type_, str) else None
        if plugin is None or plugin.error is not None:
            return None
        declared, _ = plugin.options()
        base = dict(COMMON_OPTIONS)
        if group == "sources":
            base.update(source_options(plugin.factory))
        base.update(declared)
        return base

    # -- validation ------------------------------------------------------------------

    def build(self, raw: dict[str, Any], file: Path | None) -> Config:
        for top in raw:
            if top not in HUB_OPTIONS and top not in PLUGIN_GROUPS:
                known = [*HUB_OPTIONS, *PLUGIN_GROUPS]
                self.problem(top, f"unknown section{suggest(top, known) or '; known sections: ' + ', '.join(known)}")
        sections = {name: self.section(name, self._table(raw, name), spec) for name, spec in HUB_OPTIONS.items()}
        self._ordered(sections)
        self._policy(sections["dedupe"])
        hub = sections["hub"]
        home = Path(hub["home"]) if hub.get("home") else paths.data_home(None, self.env)
        hub["home"] = str(home)
        hub["database"] = self._database(hub.get("database"), home)
        groups = {group: self.plugins(group, self._table(raw, group)) for group in PLUGIN_GROUPS}
        self._unique_consumers(groups["sinks"], groups["notifiers"])
        return Config(
            path=file, hub=hub, http=sections["http"], outbox=sections["outbox"], dedupe=sections["dedupe"],
            sources=groups["sources"], sinks=groups["sinks"], notifiers=groups["notifiers"], skipped=self.skipped,
        )

    def _table(self, raw: dict[str, Any], name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            self.problem(name, f"must be a table ([{name}]), got {show(value)}")
            return {}
        return value

    def section(self, label: str, table: dict[str, Any], spec: Mapping[str, Option]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key in table:
            if key not in spec:
                self.problem(f"{label}.{key}", f"unknown key{_unknown_hint(key, spec)}")
        for key, option in spec.items():
            if key in table:
                value, why = check(option, table[key], self.env)
                if why:
                    self.problem(f"{label}.{key}", why)
                else:
                    values[key] = value
            elif option.required:
                self.problem(f"{label}.{key}", f"missing required key: {option.doc.strip().rstrip('.')}")
            elif option.default is None:
                values[key] = None  # "not set": TOML cannot say it, only a default can
            else:
                # Defaults go through the same check, so they come out normalised
                # (durations as float, paths expanded) exactly like file values.
                value, why = check(option, default_of(option), self.env)
                if why:
                    self.problem(f"{label}.{key}", f"the declared default is invalid (a bug in its declaration): {why}")
                else:
                    values[key] = value
        return values

    def _ordered(self, sections: dict[str, dict[str, Any]]) -> None:
        for name, lower, upper in ORDERED_PAIRS:
            s = sections[name]
            if lower in s and upper in s and s[upper] < s[lower]:
                self.problem(f"{name}.{upper}", f"must be >= {name}.{lower} ({s[lower]:g}), got {s[upper]:g}")

    def _policy(self, dedupe: dict[str, Any]) -> None:
        policy = dedupe.get("policy")
        if not policy:
            return
        from .dedupe import MergePolicy

        try:
            MergePolicy.from_dict(policy)
        except ConfigError as exc:
            # MergePolicy joins its problems with "; " and names keys "merge.<key>".
            for part in str(exc).split("; "):
                m = re.match(r"unknown merge setting '(.+)'$", part)
                if m:
                    known = ("format_rank", "by_points", "prefer_sources", "prefer_products", "tolerance_s")
                    self.problem(f"dedupe.policy.{m.group(1)}", f"unknown key{suggest(m.group(1), known)}")
                    continue
                m = re.match(r"merge\.(\w+) (.*)$", part)
                if m:
                    self.problem(f"dedupe.policy.{m.group(1)}", m.group(2))
                else:
                    self.problem("dedupe.policy", part)

    def _database(self, url: str | None, home: Path) -> str:
        url = url or self.env.get("FITHUB_DATABASE_URL") or f"sqlite:///{home / 'fithub.db'}"
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(url)
        except ArgumentError:
            self.problem("hub.database", f"not a database URL (like sqlite:///path or postgresql://user@host/db), got {show(url)}")
        return url

    def plugins(self, group: str, table: dict[str, Any]) -> dict[str, PluginSection]:
        out: dict[str, PluginSection] = {}
        for name, section in table.items():
            label = f"{group}.{name}"
            if not _NAME.fullmatch(name):
                self.problem(label, "section name may contain only letters, digits, _ and -")
                continue
            if not isinstance(section, dict):
                self.problem(label, f"must be a table ([{label}]), got {show(section)}")
                continue
            built = self.plugin(group, name, section)
            if built is not None:
                out[name] = built
        return out

    def plugin(self, group: str, name: str, section: dict[str, Any]) -> PluginSection | None:
        label = f"{group}.{name}"
        installed = ", ".join(sorted(self.reg[group])) or "none"
        if "type" not in section:
            self.problem(f"{label}.type", f"missing required key: the {group[:-1]} plugin to use (installed: {installed})")
            return None
        common = self.section(label, {k: v for k, v in section.items() if k in COMMON_OPTIONS}, COMMON_OPTIONS)
        rest = {k: v for k, v in section.items() if k not in COMMON_OPTIONS}
        type_, enabled = common.get("type"), common.get("enabled", True)
        if not isinstance(type_, str):
            return None  # reported by section(): not a string
        plugin = self.reg[group].get(type_)
        if plugin is None:
            if enabled:
                self.problem(f"{label}.type", f"unknown {group[:-1]} type {show(type_)}{suggest(type_, self.reg[group])}; installed: {installed}")
            # A disabled section of an absent plugin is kept as written: nothing will run it.
            return PluginSection(name, group, type_, enabled, rest)
        if plugin.error is not None:
            why = f"plugin {show(type_)} failed to load: {plugin.error}"
            if enabled and not self.skip_broken:
                self.problem(label, why)
            elif enabled:
                self.skipped[label] = why
            return PluginSection(name, group, type_, enabled, rest)
        declared, bad = plugin.options()
        if bad:
            self.problem(label, f"plugin {show(type_)} {bad}")
        spec = {**(source_options(plugin.factory) if group == "sources" else {}), **declared}
        return PluginSection(name, group, type_, enabled, self.section(label, rest, spec))

    def _unique_consumers(self, sinks: dict[str, PluginSection], notifiers: dict[str, PluginSection]) -> None:
        for name in sorted(set(sinks) & set(notifiers)):
            # The outbox tracks progress per consumer name across both groups.
            self.problem(f"notifiers.{name}", f"name already used by [sinks.{name}]; sinks and notifiers need distinct names")


def _unknown_hint(key: str, spec: Mapping[str, Option]) -> str:
    """A near miss in this section, else the hub section that has this key, else the known keys."""
    near = suggest(key, spec)
    if near:
        return near
    elsewhere = [f"{section}.{key}" for section, keys in HUB_OPTIONS.items() if key in keys and keys is not spec]
    if elsewhere:
        return f" here (it belongs in [{elsewhere[0].split('.')[0]}]: {elsewhere[0]})"
    return f"; known keys: {', '.join(spec)}" if spec else "; this section takes no keys"


def example(plugins: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    from .config_example import example as _example

    return _example(plugins)

