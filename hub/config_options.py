"""The hub's own config sections and keys: the one settings table.

The loader validates against these declarations, ``fithub config example`` prints
them with their docs, and the tests iterate over them, so a key cannot be added
without being checked and documented. Plugins declare their keys the same way
(``OPTIONS`` on the factory); the keys every plugin section accepts are here too.
"""

from __future__ import annotations

from .model import DEFAULT_PERSON
from .options import Option

HUB_OPTIONS: dict[str, dict[str, Option]] = {
    "hub": {
        "home": Option(
            "path",
            "Data directory: the SQLite database, the raw archive of every imported file and, unless a source "
            'says otherwise, the inbox, archive and quarantine folders. "" means $FITHUB_HOME, else '
            "$XDG_DATA_HOME/fithub (~/.local/share/fithub).",
            default="",
            example="/var/lib/fithub",
        ),
        "database": Option(
            "str",
            'Database URL (SQLAlchemy form). "" means $FITHUB_DATABASE_URL, else sqlite:///<home>/fithub.db.',
            default="",
            example="postgresql://fithub@localhost/fithub",
        ),
        "person": Option(
            "str",
            "Household member that data belongs to when neither the source section nor the data names one.",
            default=DEFAULT_PERSON,
        ),
        "log_level": Option("str", "Least severe log messages written.", default="info",
                            choices=("debug", "info", "warning", "error")),
        "log_format": Option("str", "Log lines on stdout: one JSON object per line (for journald and log "
                             "shippers) or plain text (for a terminal).", default="json", choices=("json", "text")),
        "drain_timeout_s": Option(
            "duration",
            "On SIGTERM/Ctrl-C, how long in-flight imports and deliveries may finish before the hub exits "
            "(keep it below systemd's TimeoutStopSec).",
            default=8,
        ),
        "source_backoff_base_s": Option(
            "duration", "First wait before retrying a failing source; doubled (with jitter) after each failure.",
            default=5, minimum=0.1,
        ),
        "source_backoff_max_s": Option(
            "duration", "Longest wait between retries of a failing source.", default=900, minimum=0.1,
        ),
    },
    "http": {
        "enabled": Option("bool", "Serve /healthz and Prometheus /metrics over HTTP.", default=True),
        "host": Option("str", "Address to listen on; the default answers only this machine. "
                       '"0.0.0.0" exposes the endpoint to the network.', default="127.0.0.1"),
        "port": Option("int", "TCP port; 0 picks any free port (written to <home>/http.port).",
                       default=8787, minimum=0, maximum=65535),
    },
    "outbox": {
        "interval_s": Option("duration", "How often pending events are handed to sinks and notifiers.",
                             default=1.0, minimum=0.01),
        "retry_base_s": Option("duration", "First wait before a failed delivery is retried; doubled after each "
                               "failure.", default=2, minimum=0.01),
        "retry_max_s": Option("duration", "Longest wait between delivery retries.", default=600, minimum=0.01),
        "max_attempts": Option("int", "Deliveries tried before an event is parked in the dead-letter list "
                               "(fithub outbox list --dead, fithub outbox retry).", default=10, minimum=1),
        "breaker_failures": Option("int", "Consecutive failures after which a consumer's circuit breaker opens "
                                   "and its endpoint is left alone for breaker_cooldown_s.", default=5, minimum=1),
        "breaker_cooldown_s": Option("duration", "How long an open circuit breaker waits before trying again.",
                                     default=60),
        "batch": Option("int", "Most events handed to one consumer per delivery turn.", default=100,
                        minimum=1, maximum=100_000),
    },
    "dedupe": {
        "policy": Option(
            "table",
            "Which recording supplies each channel when copies of one workout are merged (hub/dedupe_merge.py "
            "MergePolicy): format_rank (list), by_points (list of channels), prefer_sources and prefer_products "
            "(channel -> list of strings), tolerance_s. Empty: the built-in policy.",
            default={},
            example={"format_rank": ["fit", "tcx", "gpx"], "prefer_sources": {"hr_bpm": ["ble:", "file:fit"]},
                     "tolerance_s": 2.0},
        ),
    },
}

# Pairs (lower, upper) within one section whose order matters.
ORDERED_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("hub", "source_backoff_base_s", "source_backoff_max_s"),
    ("outbox", "retry_base_s", "retry_max_s"),
)

PLUGIN_GROUPS: tuple[str, ...] = ("sources", "sinks", "notifiers")

# Keys every plugin section accepts besides the plugin's own OPTIONS.
COMMON_OPTIONS: dict[str, Option] = {
    "type": Option("str", "The plugin (its entry point name, see `fithub plugins`)."),
    "enabled": Option("bool", "false keeps the section in the file but does not start the plugin.", default=True),
}

# Sources also take an interval (used for polling sources, unless the plugin declares its own).
SOURCE_OPTIONS: dict[str, Option] = {
    "interval_s": Option("duration", "Seconds between two polls of this source.", default=60, minimum=0.01),
}



def source_options(factory: object) -> dict[str, Option]:
    """The extra keys a source section takes: ``interval_s`` unless the plugin is a
    push source (it has ``start`` and no ``poll``: MQTT, BLE run on their own)."""
    if factory is not None and callable(getattr(factory, "start", None)) and getattr(factory, "poll", None) is None:
        return {}
    return SOURCE_OPTIONS


# What runs with no config file at all: the inbox folder, watched. The watch
# plugin resolves its "" paths under the data directory (inbox, archive, quarantine).
DEFAULT_SOURCES: dict[str, dict] = {"inbox": {"type": "watch"}}
