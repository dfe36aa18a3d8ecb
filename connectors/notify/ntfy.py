"""ntfy notifier: a short human message per event, pushed to a phone through an
ntfy server (https://ntfy.sh or a self-hosted one).

Config (``[notifiers.<name>] type = "ntfy"``)::

    url = "https://ntfy.sh"       # the server
    topic = "alice-fithub-8c1f"   # required; on ntfy.sh the topic name is the password
    token = "tk_..."              # optional access token (Authorization: Bearer)
    priority = 3                  # 1 (min) .. 5 (urgent); a failing source is sent one higher
    events = ["activity.stored", "source.failed"]

Messages read like "Run 10.2 km in 52:10" or "Source garmin failing: ...".
Errors are mapped as for the webhook (:mod:`connectors.notify.http`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.events import (
    ACTIVITY_MERGED,
    ACTIVITY_STORED,
    EVENT_KINDS,
    MEASUREMENT_STORED,
    SOURCE_FAILED,
    SOURCE_RECOVERED,
    Event,
)
from hub.options import Option

from . import event_kinds, plugin_options
from .http import client, header_value, post

SPORT_WORDS = {
    "running": "Run",
    "cycling": "Ride",
    "walking": "Walk",
    "hiking": "Hike",
    "swimming": "Swim",
    "rowing": "Row",
    "training": "Workout",
    "fitness_equipment": "Workout",
    "strength_training": "Strength training",
}
# ntfy shows tags that are emoji short codes as emoji.
SPORT_TAGS = {"running": "runner", "cycling": "bicyclist", "walking": "walking", "hiking": "mountain", "swimming": "swimmer"}


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    tags: tuple[str, ...]
    priority_bump: int = 0


def clock(seconds: float) -> str:
    """52:10, 1:05:00."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def workout_text(payload: dict[str, Any]) -> str:
    sport = str(payload.get("sport") or "workout")
    words = [SPORT_WORDS.get(sport, sport.replace("_", " ").capitalize())]
    distance = payload.get("distance_m")
    if isinstance(distance, (int, float)) and distance >= 50:  # a few metres of GPS drift is no distance
        words.append(f"{distance / 1000:.1f} km")
    elapsed = payload.get("elapsed_s")
    if isinstance(elapsed, (int, float)) and elapsed > 0:
        words.append(f"in {clock(elapsed)}")
    return " ".join(words)


def message(event: Event) -> Message:
    """The notification for ``event`` (pure)."""
    p = event.payload
    who = f" ({event.person})" if event.person else ""
    if event.kind in (ACTIVITY_STORED, ACTIVITY_MERGED):
        text = workout_text(p)
        if event.kind == ACTIVITY_MERGED:
            return Message(f"Workout updated{who}", f"{text} (another recording merged in)", ("link",))
        return Message(f"New workout{who}", text, (SPORT_TAGS.get(str(p.get("sport")), "muscle"),))
    if event.kind == MEASUREMENT_STORED:
        count = p.get("count", 0)
        kinds = ", ".join(p.get("kinds", []))
        noun = "measurement" if count == 1 else "measurements"
        return Message(f"Measurements{who}", f"{count} {noun} stored: {kinds}".rstrip(": "), ("scales",))
    source = p.get("source", "?")
    if event.kind == SOURCE_FAILED:
        return Message("fithub source failing", f"Source {source} failing: {p.get('error') or 'unknown error'}", ("warning",), 1)
    if event.kind == SOURCE_RECOVERED:
        return Message("fithub source recovered", f"Source {source} works again", ("white_check_mark",))
    return Message("fithub", event.kind, ())


class Ntfy:
    OPTIONS = {
        "url": Option("str", "The ntfy server.", default="https://ntfy.sh"),
        "topic": Option("str", "Topic to publish to (on a public server, pick one nobody can guess).", example="alice-fithub-8c1f"),
        "token": Option("secret", "Access token for a protected topic (sent as Authorization: Bearer).", default=None),
        "priority": Option("int", "Notification priority, 1 (min) to 5 (urgent).", default=3, minimum=1, maximum=5),
        "events": Option("list", "Event kinds to notify about.", default=[ACTIVITY_STORED, SOURCE_FAILED], choices=tuple(EVENT_KINDS)),
        "timeout_s": Option("duration", "Seconds to wait for the server before retrying later.", default=10.0, minimum=0.1),
    }  # fmt: skip

    def __init__(self, name: str, options: dict, hub=None) -> None:
        opts = plugin_options("notifiers", name, self.OPTIONS, options)
        self.name = name
        self.url = f"{str(opts['url']).rstrip('/')}/{str(opts['topic']).strip('/')}"
        self.token = opts["token"] or None
        self.priority = int(opts["priority"])
        self.events = event_kinds("notifiers", name, opts["events"])
        self._http = client(float(opts["timeout_s"]))

    def deliver(self, event: Event) -> None:
        if event.kind not in self.events:
            return
        msg = message(event)
        headers = {
            "Title": header_value(msg.title),
            "Priority": str(min(5, self.priority + msg.priority_bump)),
            "Content-Type": "text/plain; charset=utf-8",
        }
        if msg.tags:
            headers["Tags"] = ",".join(msg.tags)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        post(self._http, f"ntfy {self.name}", self.url, msg.body.encode("utf-8"), headers)

    def close(self) -> None:
        self._http.close()
