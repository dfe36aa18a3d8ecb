"""The configuration layer (hub/config.py): layering, validation, environment
overrides, the default file search, the generated example and `fithub config`.

Plugins are injected (``plugins=``) with small factories declaring the same kinds
of keys the built-ins do, so these tests do not depend on the built-in plugins'
current state; the committed example and the CLI use the real entry points.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub import config
from hub.config import HUB_OPTIONS, ConfigProblems, load
from hub.errors import ConfigError
from hub.options import Option
from hub.plugins import PluginInfo

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_FILE = ROOT / "config" / "fithub.example.toml"
FITHUB = ROOT / ".venv" / "bin" / "fithub"


# -- injected plugins -------------------------------------------------------------


class FakeWatch:
    """Watches a folder (test stand-in with the watch plugin's keys)."""

    OPTIONS = {
        "path": Option("path", "Folder to watch; empty: <home>/inbox.", default="", example="/media/GARMIN"),
        "interval_s": Option("duration", "Seconds between scans.", default=5, minimum=0.1),
        "settle_s": Option("duration", "Unchanged this long before a file is taken.", default=5, minimum=0),
        "after": Option("str", "Archive or keep an imported file.", default="archive", choices=("archive", "keep")),
        "archive_dir": Option("path", "Archive folder; empty: <home>/archive.", default=""),
        "quarantine_dir": Option("path", "Quarantine folder; empty: <home>/quarantine.", default=""),
        "person": Option("str", "Owner of the files; empty: the hub's person.", default=""),
        "recursive": Option("bool", "Also look in sub-folders.", default=True),
    }

    def __init__(self, name, options, hub):  # pragma: no cover - never started here
        self.name = name


class FakeSink:
    """Writes files (test stand-in)."""

    OPTIONS = {
        "dir": Option("path", "Target folder.", example="~/Sync/workouts"),
        "formats": Option("list", "Formats to write.", default=["fit"], choices=("fit", "gpx", "json")),
        "limit": Option("int", "Files per turn.", default=10, minimum=1, maximum=1000),
        "ratio": Option("float", "A fraction.", default=0.5, minimum=0, maximum=1),
    }


class FakeHook:
    """POSTs events (test stand-in)."""

    OPTIONS = {
        "url": Option("str", "Endpoint.", example="https://example.org/hook"),
        "secret": Option("secret", "HMAC key.", default=None),
        "headers": Option("table", "Extra headers.", default={}, example={"Authorization": "Bearer T"}),
        "timeout_s": Option("duration", "Receiver timeout.", default=10.0, minimum=0.1),
    }


class BadOptions:
    OPTIONS = {"x": "not an Option"}


BROKEN_INFO = PluginInfo("sinks", "s3", "fithub_s3:Sink", "fithub-s3", "1.0", error="ImportError: No module named 'boto3'")
PLUGINS = {
    "sources": {"watch": FakeWatch, "odd": BadOptions},
    "sinks": {"file": FakeSink, "s3": BROKEN_INFO},
    "notifiers": {"webhook": FakeHook, "pager": "ModuleNotFoundError: No module named 'pager'"},
}
# For the example: only what loads and is well-formed.
GOOD_PLUGINS = {"sources": {"watch": FakeWatch}, "sinks": {"file": FakeSink}, "notifiers": {"webhook": FakeHook}}


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """An environment with no FITHUB_* variables and a private HOME."""
    home = tmp_path / "user"
    home.mkdir()
    return {"HOME": str(home)}


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def problems_of(text: str, write, env, **kw) -> list[str]:
    with pytest.raises(ConfigProblems) as info:
        load(write(text), env=env, plugins=kw.pop("plugins", PLUGINS), **kw)
    assert isinstance(info.value, ConfigError)
    # The message lists every problem, one per line.
    for p in info.value.problems:
        assert f"  {p}" in str(info.value).splitlines()[1:] or str(info.value) == p
    return info.value.problems


# -- defaults -----------------------------------------------------------------------


def test_without_any_file_the_inbox_is_watched_and_sqlite_lives_in_the_data_directory(env):
    cfg = load(None, env=env, plugins=PLUGINS)
    assert cfg.path is None
    expected_home = Path(env["HOME"]) / ".local" / "share" / "fithub"
    assert cfg.home == expected_home
    assert cfg.database_url == f"sqlite:///{expected_home / 'fithub.db'}"
    assert list(cfg.sources) == ["inbox"]
    inbox = cfg.sources["inbox"]
    assert (inbox.group, inbox.type, inbox.enabled) == ("sources", "watch", True)
    # The plugin's own keys only, defaults filled in and normalised (durations as float).
    assert inbox.options == {"interval_s": 5.0, "path": "", "settle_s": 5.0, "after": "archive", "archive_dir": "",
                             "quarantine_dir": "", "person": "", "recursive": True}
    assert cfg.sinks == {} and cfg.notifiers == {}
    assert cfg.hub["person"] == "default" and cfg.hub["log_format"] == "json" and cfg.hub["drain_timeout_s"] == 8.0
    assert cfg.http == {"enabled": True, "host": "127.0.0.1", "port": 8787}
    assert cfg.outbox == {"interval_s": 1.0, "retry_base_s": 2.0, "retry_max_s": 600.0, "max_attempts": 10,
                          "breaker_failures": 5, "breaker_cooldown_s": 60.0, "batch": 100}
    assert cfg.dedupe == {"policy": {}} and cfg.merge_policy is None


def test_home_and_database_defaults_come_from_the_environment_and_the_file_and_overrides_beat_them(env, write, tmp_path):
    env = {**env, "FITHUB_HOME": str(tmp_path / "h"), "FITHUB_DATABASE_URL": "postgresql://a@b/c"}
    cfg = load(None, env=env, plugins=PLUGINS)
    assert cfg.home == tmp_path / "h" and cfg.database_url == "postgresql://a@b/c"
    path = write('[hub]\nhome = "$HOME/data"\ndatabase = "sqlite:////srv/x.db"\n')
    cfg = load(path, env=env, plugins=PLUGINS)
    assert cfg.home == Path(env["HOME"]) / "data" and cfg.database_url == "sqlite:////srv/x.db"
    cfg = load(path, env={**env, "FITHUB_HUB__DATABASE": "postgresql://z@y/x", "FITHUB_HUB__HOME": "~/other"}, plugins=PLUGINS)
    assert cfg.database_url == "postgresql://z@y/x" and cfg.home == Path(env["HOME"]) / "other"
    # Without a database anywhere: SQLite inside whichever home won.
    cfg = load(write('[hub]\nhome = "/srv/fithub"\n'), env={"HOME": env["HOME"]}, plugins=PLUGINS)
    assert cfg.database_url == "sqlite:////srv/fithub/fithub.db"


def test_the_default_inbox_can_be_disabled_extended_or_redefined(env, write):
    cfg = load(write("[sources.inbox]\nenabled = false\n"), env=env, plugins=PLUGINS)
    assert cfg.sources["inbox"].enabled is False and cfg.enabled("sources") == {}
    cfg = load(write('[sources.inbox]\npath = "/data/in"\nafter = "keep"\n'), env=env, plugins=PLUGINS)
    assert cfg.sources["inbox"].type == "watch"
    assert cfg.sources["inbox"].options["path"] == "/data/in" and cfg.sources["inbox"].options["after"] == "keep"
    cfg = load(write('[sinks.inbox]\ntype = "file"\ndir = "/x"\n[sources.garmin]\ntype = "watch"\n'), env=env, plugins=PLUGINS)
    assert set(cfg.sources) == {"inbox", "garmin"}  # adding sections keeps the default one
    # Another type under the same name replaces the default section entirely.
    plugins = {**PLUGINS, "sources": {**PLUGINS["sources"], "other": FakeSink}}
    cfg = load(write('[sources.inbox]\ntype = "other"\ndir = "/y"\n'), env=env, plugins=plugins)
    assert cfg.sources["inbox"].type == "other"
    assert cfg.sources["inbox"].options == {"interval_s": 60.0, "dir": "/y", "formats": ["fit"], "limit": 10, "ratio": 0.5}


# -- every documented key -------------------------------------------------------------

HUB_KEYS = [(s, k, o) for s, keys in HUB_OPTIONS.items() for k, o in keys.items()]


def _valid(option: Option):
    """A value other than the default that the option accepts."""
    if option.example is not None:
        return option.example
    if option.choices:
        other = [c for c in option.choices if c != option.default and [c] != option.default]
        return [other[-1]] if option.kind == "list" else other[0]
    if option.kind in ("int", "float", "duration"):
        # Above the default (keeps "max >= base" pairs valid), inside the range.
        step = 1 if option.kind == "int" else 0.25
        value = option.default + step
        return value if option.maximum is None or value <= option.maximum else option.default - step
    return {
        "bool": not option.default,
        "str": "something",
        "path": "/srv/somewhere",
        "list": ["a", "b"],
        "table": {"a": 1},
        "secret": "s3cret",
    }[option.kind]


def _bad(option: Option) -> list:
    """Values the option must refuse: wrong type, out of range, not a choice."""
    wrong_type = {"bool": "yes", "str": 5, "path": 5, "int": "x", "float": "x", "duration": "abc",
                  "list": "a,b", "table": 3, "secret": 5}[option.kind]
    bad = [wrong_type]
    if option.minimum is not None:
        bad.append(option.minimum - 1)
    if option.maximum is not None:
        bad.append(option.maximum + 1)
    if option.kind == "duration":
        bad.append(-1)
    if option.choices:
        bad.append(["nonsense"] if option.kind == "list" else "nonsense")
    return bad


def _toml(value) -> str:
    from hub.config_values import toml_value

    return toml_value(value)


@pytest.mark.parametrize(("section", "key", "option"), HUB_KEYS, ids=[f"{s}.{k}" for s, k, _ in HUB_KEYS])
def test_every_hub_key_loads_a_valid_value_and_names_itself_on_a_bad_one(section, key, option, env, write):
    assert option.doc.strip(), f"{section}.{key} has no doc"
    value = _valid(option)
    cfg = load(write(f"[{section}]\n{key} = {_toml(value)}\n"), env=env, plugins=PLUGINS)
    got = getattr(cfg, section)[key]
    if key == "home":
        assert cfg.home == Path(value)
    elif option.kind in ("float", "duration"):
        assert got == pytest.approx(float(value))
    else:
        assert got == value
    for bad in _bad(option):
        problems = problems_of(f"[{section}]\n{key} = {_toml(bad)}\n", write, env)
        assert len(problems) == 1 and problems[0].startswith(f"{section}.{key}: "), (bad, problems)


WATCH_KEYS = list(FakeWatch.OPTIONS.items()) + list(FakeSink.OPTIONS.items()) + list(FakeHook.OPTIONS.items())


@pytest.mark.parametrize(("key", "option"), WATCH_KEYS, ids=[k for k, _ in WATCH_KEYS])
def test_plugin_keys_of_every_kind_are_validated_under_their_section(key, option, env, write):
    owner = next(c for c in (FakeWatch, FakeSink, FakeHook) if c.OPTIONS.get(key) is option)
    header, required = {
        FakeWatch: ('[sources.inbox]\n', ""),
        FakeSink: ('[sinks.out]\ntype = "file"\n', 'dir = "/out"\n'),
        FakeHook: ('[notifiers.hook]\ntype = "webhook"\n', 'url = "http://x"\n'),
    }[owner]
    group, name = {FakeWatch: ("sources", "inbox"), FakeSink: ("sinks", "out"), FakeHook: ("notifiers", "hook")}[owner]
    base = header + "".join(line + "\n" for line in required.splitlines() if not line.startswith(f"{key} ="))
    cfg = load(write(base + f"{key} = {_toml(_valid(option))}\n"), env=env, plugins=PLUGINS)
    assert key in getattr(cfg, group)[name].options
    for bad in _bad(option):
        problems = problems_of(base + f"{key} = {_toml(bad)}\n", write, env)
        assert len(problems) == 1 and problems[0].startswith(f"{group}.{name}.{key}: "), (bad, problems)


def test_values_are_normalised_and_secrets_never_echoed(env, write):
    cfg = load(write('[hub]\nlog_level = "DEBUG"\ndrain_timeout_s = "1.5m"\n'), env=env, plugins=PLUGINS)
    assert cfg.hub["log_level"] == "debug" and cfg.hub["drain_timeout_s"] == 90.0
    problems = problems_of('[outbox]\nretry_max_s = "250ms"\n', write, env)
    assert problems == ["outbox.retry_max_s: must be >= outbox.retry_base_s (2), got 0.25"]
    problems = problems_of('[notifiers.hook]\ntype = "webhook"\nurl = "u"\nsecret = ["hunter2"]\n', write, env)
    assert problems == ["notifiers.hook.secret: must be a string, got <hidden>"]
    cfg = load(write('[notifiers.hook]\ntype = "webhook"\nurl = "u"\n'), env=env, plugins=PLUGINS)
    assert cfg.notifiers["hook"].options["secret"] is None  # "not set" default survives
    problems = problems_of('[sources.inbox]\npath = "$NOPE/in"\n', write, env)
    assert problems == ['sources.inbox.path: refers to $NOPE, which is not set, got "$NOPE/in"']


def test_the_dedupe_policy_is_checked_by_merge_policy(env, write):
    cfg = load(write('[dedupe.policy]\nformat_rank = ["tcx", "fit"]\ntolerance_s = 1\n'), env=env, plugins=PLUGINS)
    assert cfg.merge_policy.format_rank == ("tcx", "fit") and cfg.merge_policy.tolerance_s == 1.0
    problems = problems_of('[dedupe.policy]\nformat_rank = "fit"\ntolerance = 1\n', write, env)
    assert problems[0] == 'dedupe.policy.tolerance: unknown key (did you mean "tolerance_s"?)'
    assert problems[1].startswith("dedupe.policy.format_rank: must be a list of strings")


# -- reporting ---------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_each_with_its_key(env, write):
    text = """
[hub]
log_level = "loud"
port = 80
[http]
port = -1
[outbox]
batch = "many"
[sources.inbox]
settle_s = "soon"
[sinks.out]
type = "file"
[notifiers.x]
type = "webhook"
url = 7
"""
    problems = problems_of(text, write, env)
    assert problems == [
        'hub.port: unknown key here (it belongs in [http]: http.port)',
        'hub.log_level: must be one of "debug", "info", "warning", "error", got "loud"',
        "http.port: must be an integer between 0 and 65535, got -1",
        'outbox.batch: must be an integer between 1 and 100000, got "many"',
        'sources.inbox.settle_s: must be a number of seconds >= 0 (or a string like "5m"), got "soon"',
        "sinks.out.dir: missing required key: Target folder",
        "notifiers.x.url: must be a string, got 7",
    ]
    with pytest.raises(ConfigError) as info:
        load(write(text), env=env, plugins=PLUGINS)
    message = str(info.value)
    assert message.splitlines()[0] == f"invalid configuration in {write(text)} (7 problems):"
    assert len(message.splitlines()) == 8


def test_unknown_keys_and_sections_come_with_suggestions(env, write):
    problems = problems_of('[hub]\nlog_levle = "debug"\nzzz = 1\n[htpp]\nport = 1\n[sources.inbox]\nsetle_s = 3\n',
                           write, env)
    assert problems == [
        'htpp: unknown section (did you mean "http"?)',
        'hub.log_levle: unknown key (did you mean "log_level"?)',
        "hub.zzz: unknown key; known keys: home, database, person, log_level, log_format, drain_timeout_s, "
        "source_backoff_base_s, source_backoff_max_s",
        'sources.inbox.setle_s: unknown key (did you mean "settle_s"?)',
    ]


def test_plugin_sections_name_unknown_missing_and_broken_plugins(env, write):
    problems = problems_of(
        '[sources.a]\ntype = "wach"\n[sources.b]\npath = "/x"\n[sinks.c]\ntype = "s3"\n[notifiers.d]\ntype = "pager"\n'
        '[sources.e]\ntype = "odd"\n[sinks.f]\nenabled = "yes"\ntype = "file"\ndir = "/f"\n[sinks."bad name"]\ntype = "file"\n'
        '[notifiers.f]\ntype = "webhook"\nurl = "u"\n[sinks.g]\n',
        write, env,
    )
    assert problems == [
        'sources.a.type: unknown source type "wach" (did you mean "watch"?); installed: odd, watch',
        "sources.b.type: missing required key: the source plugin to use (installed: odd, watch)",
        'sources.e: plugin "odd" declares OPTIONS that are not a mapping of key names to hub.options.Option',
        'sinks.c: plugin "s3" failed to load: ImportError: No module named \'boto3\'',
        'sinks.f.enabled: must be true or false, got "yes"',
        "sinks.bad name: section name may contain only letters, digits, _ and -",
        'sinks.g.type: missing required key: the sink plugin to use (installed: file, s3)',
        'notifiers.d: plugin "pager" failed to load: ModuleNotFoundError: No module named \'pager\'',
        "notifiers.f: name already used by [sinks.f]; sinks and notifiers need distinct names",
    ]


def test_broken_plugins_can_be_skipped_for_the_daemon_and_disabled_sections_are_left_alone(env, write):
    path = write('[sinks.c]\ntype = "s3"\nbucket = "b"\n[notifiers.d]\ntype = "pager"\nenabled = false\n'
                 '[sources.old]\ntype = "gone"\nenabled = false\n')
    cfg = load(path, env=env, plugins=PLUGINS, skip_broken_plugins=True)
    assert cfg.skipped == {"sinks.c": "plugin \"s3\" failed to load: ImportError: No module named 'boto3'"}
    assert cfg.enabled("sinks") == {} and cfg.sinks["c"].options == {"bucket": "b"}
    assert cfg.notifiers["d"].enabled is False and cfg.sources["old"].type == "gone"
    # Without skipping, only the enabled broken section is a problem.
    with pytest.raises(ConfigProblems) as info:
        load(path, env=env, plugins=PLUGINS)
    assert info.value.problems == ["sinks.c: plugin \"s3\" failed to load: ImportError: No module named 'boto3'"]


# -- environment overrides --------------------------------------------------------------


def test_environment_overrides_are_converted_per_kind_and_beat_the_file(env, write):
    path = write('[http]\nport = 1000\n[sinks.out]\ntype = "file"\ndir = "/out"\n')
    cfg = load(path, env={
        **env,
        "FITHUB_HTTP__PORT": "9000",
        "FITHUB_HTTP__ENABLED": "off",
        "FITHUB_OUTBOX__RETRY_MAX_S": "5m",
        "FITHUB_OUTBOX__INTERVAL_S": "0.5",
        "FITHUB_HUB__LOG_LEVEL": "WARNING",
        "fithub_sources__INBOX__Settle_S": "3",
        "FITHUB_SOURCES__INBOX__RECURSIVE": "no",
        "FITHUB_SOURCES__INBOX__PATH": "~/inbox",
        "FITHUB_SINKS__OUT__FORMATS": "fit, gpx",
        "FITHUB_SINKS__OUT__ENABLED": "0",
        "FITHUB_NOTIFIERS__HOOK__TYPE": "webhook",
        "FITHUB_NOTIFIERS__HOOK__URL": "http://127.0.0.1:9/x",
        "FITHUB_NOTIFIERS__HOOK__HEADERS": '{ X-Token = "t" }',
        "FITHUB_DEDUPE__POLICY": '{ format_rank = ["gpx"] }',
        # not overrides:
        "FITHUB_CONFIG": "", "FITHUB_TEST_PG": "postgresql://elsewhere", "FITHUBX__Y": "1",
    }, plugins=PLUGINS)
    assert cfg.http["port"] == 9000 and cfg.http["enabled"] is False
    assert cfg.outbox["retry_max_s"] == 300.0 and cfg.outbox["interval_s"] == 0.5
    assert cfg.hub["log_level"] == "warning"
    inbox = cfg.sources["inbox"].options
    assert inbox["settle_s"] == 3.0 and inbox["recursive"] is False and inbox["path"] == f"{env['HOME']}/inbox"
    assert cfg.sinks["out"].options["formats"] == ["fit", "gpx"] and cfg.sinks["out"].enabled is False
    assert cfg.notifiers["hook"].options["url"] == "http://127.0.0.1:9/x"
    assert cfg.notifiers["hook"].options["headers"] == {"X-Token": "t"}
    assert cfg.merge_policy.format_rank == ("gpx",)
    cfg = load(path, env={**env, "FITHUB_SINKS__OUT__FORMATS": '["json"]', "FITHUB_HTTP__ENABLED": "Yes"}, plugins=PLUGINS)
    assert cfg.sinks["out"].options["formats"] == ["json"] and cfg.http["enabled"] is True


@pytest.mark.parametrize(("word", "expected"), [(w, True) for w in ("1", "true", "yes", "on", "TRUE")]
                         + [(w, False) for w in ("0", "false", "no", "off", "Off")])
def test_boolean_words_in_the_environment(word, expected, env):
    assert load(None, env={**env, "FITHUB_HTTP__ENABLED": word}, plugins=PLUGINS).http["enabled"] is expected


def test_bad_or_unknown_overrides_name_the_variable(env):
    with pytest.raises(ConfigProblems) as info:
        load(None, env={
            **env,
            "FITHUB_HTTP__PORT": "eighty",
            "FITHUB_HTTP__ENABLED": "maybe",
            "FITHUB_HUB__LOGLEVEL": "debug",
            "FITHUB_SOURCES__INBOX__NOPE": "1",
            "FITHUB_BOGUS__X": "1",
            "FITHUB_OUTBOX__A__B": "1",
            "FITHUB_SINKS__X__DIR": "/x",  # a new section without a type
        }, plugins=PLUGINS)
    assert info.value.problems == [
        "FITHUB_BOGUS__X: unknown config section 'bogus'",
        'FITHUB_HUB__LOGLEVEL: unknown key hub.loglevel (did you mean "log_level"?)',
        "FITHUB_OUTBOX__A__B: not a setting; expected FITHUB_<SECTION>__<KEY>",
        "FITHUB_SOURCES__INBOX__NOPE: unknown key sources.inbox.nope; known keys: type, enabled, interval_s, path, "
        "settle_s, after, archive_dir, quarantine_dir, person, recursive",
        'http.enabled (from FITHUB_HTTP__ENABLED): must be true or false, got "maybe"',
        'http.port (from FITHUB_HTTP__PORT): must be an integer between 0 and 65535, got "eighty"',
        "sinks.x.type: missing required key: the sink plugin to use (installed: file, s3)",
    ]


# -- finding the file ------------------------------------------------------------------


def test_default_path_resolution_order(env, tmp_path):
    home = tmp_path / "data"
    xdg = tmp_path / "xdg"
    env = {**env, "FITHUB_HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}
    assert config.default_paths(env) == [home / "config.toml", xdg / "fithub" / "config.toml", config.SYSTEM_CONFIG]
    assert config.SYSTEM_CONFIG == Path("/etc/fithub/config.toml")
    if not config.SYSTEM_CONFIG.exists():
        assert load(None, env=env, plugins=PLUGINS).path is None
    (xdg / "fithub").mkdir(parents=True)
    (xdg / "fithub" / "config.toml").write_text("[http]\nport = 1\n")
    assert load(None, env=env, plugins=PLUGINS).path == xdg / "fithub" / "config.toml"
    home.mkdir()
    (home / "config.toml").write_text("[http]\nport = 2\n")
    cfg = load(None, env=env, plugins=PLUGINS)
    assert cfg.path == home / "config.toml" and cfg.http["port"] == 2
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[http]\nport = 3\n")
    assert load(None, env={**env, "FITHUB_CONFIG": str(explicit)}, plugins=PLUGINS).http["port"] == 3
    assert load(explicit, env={**env, "FITHUB_CONFIG": str(home / "config.toml")}, plugins=PLUGINS).http["port"] == 3
    # Without XDG_CONFIG_HOME: ~/.config.
    assert config.default_paths({"HOME": "/u"})[1] == Path("/u/.config/fithub/config.toml")


def test_a_config_file_asked_for_by_name_must_exist(env, tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.toml: config file does not exist"):
        load(tmp_path / "missing.toml", env=env, plugins=PLUGINS)
    with pytest.raises(ConfigError, match=r"from \$FITHUB_CONFIG\) does not exist"):
        load(None, env={**env, "FITHUB_CONFIG": str(tmp_path / "nope.toml")}, plugins=PLUGINS)
    with pytest.raises(ConfigError, match="is a directory"):
        load(tmp_path, env=env, plugins=PLUGINS)


def test_toml_syntax_errors_name_the_file_line_and_column(env, write):
    path = write('[hub]\nperson = "alice"\nlog_level = \n')
    with pytest.raises(ConfigProblems) as info:
        load(path, env=env, plugins=PLUGINS)
    assert str(info.value).startswith(f"{path}:3:13: invalid TOML: ")
    assert "(line 3, column 13)" in str(info.value)
    assert info.value.problems == [str(info.value)]
    path = write('[hub]\nperson = "unterminated\n')
    with pytest.raises(ConfigError, match=rf"^{path}:2:\d+: invalid TOML"):
        load(path, env=env, plugins=PLUGINS)
    bad = write("x")
    bad.write_bytes(b'[hub]\nperson = "\xff"\n')
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(bad byte at offset 16\)"):
        load(bad, env=env, plugins=PLUGINS)


# -- the example ------------------------------------------------------------------------


def test_the_example_loads_as_is_and_equals_the_defaults(env, write):
    text = config.example(GOOD_PLUGINS)
    cfg = load(write(text), env=env, plugins=GOOD_PLUGINS)
    defaults = load(None, env=env, plugins=GOOD_PLUGINS)
    for part in ("hub", "http", "outbox", "dedupe", "sources", "sinks", "notifiers"):
        assert getattr(cfg, part) == getattr(defaults, part), part
    for section, keys in HUB_OPTIONS.items():
        assert f"\n[{section}]\n" in text
        for key, option in keys.items():
            assert f"\n{key} = " in text or f"\n# {key} = " in text, key
            assert option.doc.split()[0] in text
    for key in FakeHook.OPTIONS:
        assert f"\n# {key} = " in text


def test_uncommenting_an_optional_plugin_section_gives_a_working_section(env, write):
    text = config.example(GOOD_PLUGINS)
    start = text.index("# [notifiers.webhook]")
    block = text[start:].split("\n\n")[0]
    uncommented = "\n".join(line[2:] for line in block.splitlines() if "=" in line or line.startswith("# ["))
    cfg = load(write(text + "\n" + uncommented + "\n"), env=env, plugins=GOOD_PLUGINS)
    assert cfg.notifiers["webhook"].options["url"] == "https://example.org/hook"
    assert cfg.notifiers["webhook"].options["headers"] == {"Authorization": "Bearer T"}


def test_the_committed_example_is_the_generated_one():
    assert EXAMPLE_FILE.read_text(encoding="utf-8") == config.example(), (
        "config/fithub.example.toml is out of date; regenerate it with: "
        ".venv/bin/fithub config example > config/fithub.example.toml"
    )


def test_the_committed_example_loads_with_the_installed_plugins(env):
    cfg = load(EXAMPLE_FILE, env=env)
    assert cfg.path == EXAMPLE_FILE and list(cfg.sources) == ["inbox"]


# -- robustness -----------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NAMES = st.sampled_from([*HUB_OPTIONS, "sources", "sinks", "notifiers", "inbox", "type", "enabled", "watch", "file",
                          "webhook", "s3", "pager", "odd", "port", "path", "policy", "format_rank", "settle_s", "url",
                          "formats", "secret", "headers", "tolerance_s"]) | st.text(min_size=1, max_size=8)
_SCALARS = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=12)
            | st.sampled_from(["5m", "1h", "-3s", "watch", "file", "fit", "", "$HOME", "~/x", "$NOPE"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=4),
                       max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(_NAMES, _VALUES, max_size=6),
       overrides=st.dictionaries(st.lists(_NAMES, min_size=1, max_size=4).map(lambda p: "FITHUB_" + "__".join(p)),
                                 st.text(max_size=10), max_size=3))
def test_any_document_and_environment_gives_a_config_or_a_list_of_problems(doc, overrides, tmp_path_factory):
    """Bad input never crashes the loader: it returns a Config or raises ConfigProblems."""
    from hub.config_values import toml_key, toml_value

    path = tmp_path_factory.mktemp("fuzz") / "config.toml"
    path.write_text("".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in doc.items()), encoding="utf-8")
    env = {"HOME": "/nonexistent-home", **{k: v for k, v in overrides.items() if "\x00" not in k + v}}
    try:
        cfg = load(path, env=env, plugins=PLUGINS)
    except ConfigProblems as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
    else:
        assert isinstance(cfg.home, Path) and all(s.group == "sources" for s in cfg.sources.values())


# -- the command line ---------------------------------------------------------------------


def _run(args: list[str], tmp_path: Path, **extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FITHUB_", "XDG_"))}
    env.update(HOME=str(tmp_path / "user"), **extra)
    (tmp_path / "user").mkdir(exist_ok=True)
    return subprocess.run([str(FITHUB), *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.skipif(not FITHUB.exists(), reason=f"{FITHUB} is not installed (pip install -e .)")
def test_cli_config_check_and_example(tmp_path, write):
    run = _run(["--home", str(tmp_path / "data"), "config", "check"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "OK: built-in defaults (1 source, 0 sinks, 0 notifiers)"

    good = write('[sources.inbox]\nenabled = false\n[sources.b]\ntype = "watch"\n[sources.c]\ntype = "watch"\n', "good.toml")
    run = _run(["config", "check", "--config", str(good)], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"OK: {good} (2 sources, 0 sinks, 0 notifiers)"

    bad = write('[hub]\nlog_level = "loud"\n[http]\nport = "x"\n', "bad.toml")
    run = _run(["config", "check", "-c", str(bad)], tmp_path, FITHUB_OUTBOX__BATCH="0")
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert lines[0] == f"error: invalid configuration in {bad} (3 problems):"
    assert lines[1:] == [
        '  hub.log_level: must be one of "debug", "info", "warning", "error", got "loud"',
        '  http.port: must be an integer between 0 and 65535, got "x"',
        "  outbox.batch (from FITHUB_OUTBOX__BATCH): must be an integer between 1 and 100000, got 0",
    ]

    run = _run(["config", "check"], tmp_path, FITHUB_CONFIG=str(tmp_path / "absent.toml"))
    assert run.returncode == 2 and "absent.toml: config file (from $FITHUB_CONFIG) does not exist" in run.stderr

    run = _run(["config", "example"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == config.example()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def _builtin_plugin_keys():
    from hub.plugins import discover

    found = []
    for group in ("sources", "sinks", "notifiers"):
        for type_, info in sorted(discover(group).items()):
            if info.builtin and info.loaded is not None:
                found += [(group, type_, key, opt) for key, opt in sorted(info.options.items())]
    return found


BUILTIN_KEYS = _builtin_plugin_keys()


@pytest.mark.parametrize(("group", "type_", "key", "option"), BUILTIN_KEYS,
                         ids=[f"{g}.{t}.{k}" for g, t, k, _ in BUILTIN_KEYS])
def test_every_key_of_every_installed_builtin_plugin_is_documented_and_validated(group, type_, key, option, env, write):
    """The real plugins (found through their entry points), every documented key:
    a valid value loads, each bad value is one problem naming the dotted key."""
    from hub.plugins import discover

    assert option.doc.strip(), f"{type_}.{key} has no doc"
    info = discover(group)[type_]
    required = "".join(
        f"{k} = {_toml(_valid(o))}\n" for k, o in info.options.items() if o.required and k != key
    )
    base = f'[{group}.x]\ntype = "{type_}"\n{required}'
    cfg = load(write(base + f"{key} = {_toml(_valid(option))}\n"), env=env)
    assert key in getattr(cfg, group)["x"].options
    for bad in _bad(option):
        with pytest.raises(ConfigProblems) as caught:
            load(write(base + f"{key} = {_toml(bad)}\n"), env=env)
        problems = caught.value.problems
        assert len(problems) == 1 and problems[0].startswith(f"{group}.x.{key}: "), (bad, problems)
