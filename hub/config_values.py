"""Checking one config value against its :class:`hub.options.Option` (pure, no I/O).

Every function here returns problems as strings (without the dotted key, which the
caller prefixes) instead of raising, so the loader can collect every problem of a
file and report them all at once.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from .options import Option

_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def show(value: Any, option: Option | None = None, limit: int = 60) -> str:
    """A value as the user would have written it in TOML, shortened; secrets are never shown."""
    if option is not None and option.kind == "secret":
        return "<hidden>"
    text = toml_value(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (inline tables for mappings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return "[" + ", ".join(toml_value(v) for v in items) + "]"
    return _toml_string(str(value))


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, but TOML also forbids a raw DEL, and JSON's
    # ensure_ascii would write non-BMP characters as surrogate pairs, which TOML refuses.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def suggest(word: str, known: Iterable[str]) -> str:
    """' (did you mean "x"?)' for a near miss, else ''."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    if not close:
        # Case slips ("Log_Level") are too far apart for difflib's ratio on short words.
        close = [k for k in known if k.lower() == word.lower()][:1]
    return f' (did you mean "{close[0]}"?)' if close else ""


def _range_text(option: Option, implicit_min: float | None = None) -> str:
    lo = option.minimum if option.minimum is not None else implicit_min
    hi = option.maximum
    if lo is not None and hi is not None:
        return f" between {_num(lo)} and {_num(hi)}"
    if lo is not None:
        return f" >= {_num(lo)}"
    if hi is not None:
        return f" <= {_num(hi)}"
    return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _in_range(option: Option, value: float, implicit_min: float | None = None) -> bool:
    lo = option.minimum if option.minimum is not None else implicit_min
    if lo is not None and value < lo:
        return False
    return option.maximum is None or value <= option.maximum


def parse_duration(value: Any) -> float | None:
    """Seconds from a number or a string like "90s", "5m", "1.5h", "250ms"; None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    return None


def expand_path(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """``~`` and ``$VAR``/``${VAR}`` expanded from ``env``; an unset variable is a
    problem (leaving "$FOO" in a path would silently create a folder named so)."""
    problems: list[str] = []

    def var(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in env:
            problems.append(f"refers to ${name}, which is not set")
            return m.group(0)
        return env[name]

    out = _VAR.sub(var, text)
    if out == "~" or out.startswith("~/"):
        home = env.get("HOME")
        if home:
            out = home + out[1:]
        else:
            problems.append("starts with ~ but HOME is not set")
    return out, problems


def check(option: Option, value: Any, env: Mapping[str, str]) -> tuple[Any, str | None]:
    """(the value to keep, None) or (None, what is wrong with it)."""
    kind = option.kind
    got = f", got {show(value, option)}"
    if kind in ("str", "secret", "path"):
        if not isinstance(value, str):
            what = "a path (a string)" if kind == "path" else "a string"
            return None, f"must be {what}{got}"
        if kind == "path" and value:
            value, problems = expand_path(value, env)
            if problems:
                return None, "; ".join(problems) + got
    elif kind == "bool":
        if not isinstance(value, bool):
            return None, f"must be true or false{got}"
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not _in_range(option, value):
            return None, f"must be an integer{_range_text(option)}{got}"
    elif kind == "float":
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not ok or not _in_range(option, value):
            return None, f"must be a number{_range_text(option)}{got}"
        value = float(value)
    elif kind == "duration":
        seconds = parse_duration(value)
        # A negative duration never means anything: 0 is the implicit lower bound.
        if seconds is None or not _in_range(option, seconds, implicit_min=0):
            return None, f'must be a number of seconds{_range_text(option, 0)} (or a string like "5m"){got}'
        value = seconds
    elif kind == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, f"must be a list of strings{got}"
        value = list(value)
    elif kind == "table":
        if not isinstance(value, Mapping):
            return None, f"must be a table{got}"
        value = copy.deepcopy(dict(value))
    if option.choices is not None and kind == "list":
        # For a list, choices constrain each element.
        picked = [_choice(option.choices, v) for v in value]
        bad = [v for v, c in zip(value, picked) if c is _NO_CHOICE]
        if bad:
            shown = ", ".join(toml_value(c) for c in option.choices)
            hint = suggest(bad[0], [str(c) for c in option.choices])
            return None, f"may only contain {shown}; {toml_value(bad[0])} is not one{hint}"
        value = picked
    elif option.choices is not None:
        chosen = _choice(option.choices, value)
        if chosen is _NO_CHOICE:
            shown = ", ".join(toml_value(c) for c in option.choices)
            hint = suggest(value, [str(c) for c in option.choices]) if isinstance(value, str) else ""
            return None, f"must be one of {shown}{got}{hint}"
        value = chosen
    return value, None


_NO_CHOICE = object()


def _choice(choices: tuple[Any, ...], value: Any) -> Any:
    if value in choices:
        return value
    if isinstance(value, str):
        # "INFO" for "info": case carries no meaning in these words.
        for c in choices:
            if isinstance(c, str) and c.lower() == value.lower():
                return c
    return _NO_CHOICE


def default_of(option: Option) -> Any:
    # A copy: a mutable default (list, table) must not be shared between configs.
    return copy.deepcopy(option.default)


def from_env(option: Option, text: str) -> Any:
    """An environment string converted to ``option``'s kind; when it cannot be, the
    string itself, so that :func:`check` reports it like a bad file value."""
    kind = option.kind
    stripped = text.strip()
    if kind == "bool":
        return _BOOL_WORDS.get(stripped.lower(), text)
    if kind == "int":
        try:
            return int(stripped)
        except ValueError:
            return text
    if kind in ("float", "duration"):
        try:
            return float(stripped)
        except ValueError:
            return text  # "5m" is still a valid duration; check() decides
    if kind == "list":
        if stripped.startswith("["):
            return _toml_literal(stripped, text)
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind == "table":
        return _toml_literal(stripped, text) if stripped.startswith("{") else text
    return text


def _toml_literal(literal: str, fallback: Any) -> Any:
    try:
        return tomllib.loads(f"v = {literal}")["v"]
    except tomllib.TOMLDecodeError:
        return fallback
