"""Topic filters as data: which payload profile reads which topic.

The source's ``subscriptions`` option maps MQTT topic filters to profile names
(``{"home/TheengsGateway/BTtoMQTT/+" = "theengs"}``). These pure functions match a
received topic to its profile and build what is sent to the broker (with
``shared_group``, ``$share/<group>/<filter>``: MQTT 5 shared subscriptions, where the
broker hands each message to one member of the group).
"""

from __future__ import annotations

from collections.abc import Mapping

SHARE_PREFIX = "$share/"


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT 5 wildcard matching: ``+`` is one level, a trailing ``#`` any number of
    levels (including none). Topics starting with ``$`` are never matched by a
    filter starting with a wildcard (MQTT 5 section 4.7.2)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    want = topic_filter.split("/")
    got = topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return i == len(want) - 1
        if i >= len(got):
            return False
        if level != "+" and level != got[i]:
            return False
    return len(got) == len(want)


def profile_for(topic: str, subscriptions: Mapping[str, str]) -> str | None:
    """The profile of the first filter (in config order) that matches ``topic``.

    Config order decides when filters overlap, so a specific filter listed before
    a broad one wins, which is what a reader of the config expects.
    """
    for topic_filter, profile in subscriptions.items():
        if matches(topic_filter, topic):
            return profile
    return None


def broker_filter(topic_filter: str, shared_group: str | None) -> str:
    """What to subscribe to: the filter itself, or its shared form."""
    return f"{SHARE_PREFIX}{shared_group}/{topic_filter}" if shared_group else topic_filter


def filter_problems(topic_filter: str) -> list[str]:
    """Why ``topic_filter`` is not a valid MQTT filter (empty list when it is)."""
    problems = []
    if not topic_filter:
        return ["a topic filter cannot be empty"]
    if topic_filter.startswith(SHARE_PREFIX):
        problems.append("give the plain filter; shared_group adds the $share/<group>/ prefix")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            problems.append("'#' must be a whole level and the last one")
        if "+" in level and level != "+":
            problems.append("'+' must be a whole level")
    if "\x00" in topic_filter:
        problems.append("a topic filter cannot contain NUL")
    return sorted(set(problems))


def group_problems(group: str) -> list[str]:
    """A share name cannot contain '/', '+' or '#' (MQTT 5 section 4.8.2)."""
    return [f"shared_group {group!r} cannot contain '/', '+' or '#'"] if any(c in group for c in "/+#") else []
