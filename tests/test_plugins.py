"""Plugins are found through entry points, the built-ins like any other package's.
A plugin that fails to load, to start or to poll is logged by name and skipped;
the hub keeps running. Third-party plugins here are a real installed distribution
(a ``.dist-info`` folder on the path), not patched registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from daemon_util import DaemonProcess, copy_file, db_counts, fithub_cmd, wait_for, write_config

BUILTINS = {
    ("sources", "watch"), ("sources", "garmin_usb"),
    ("decoders", "fit"), ("decoders", "gpx"), ("decoders", "tcx"), ("decoders", "garmin_json"),
    ("decoders", "apple_health"), ("decoders", "garmin_connect_export"),
    ("sinks", "file"), ("notifiers", "webhook"), ("notifiers", "ntfy"),
}


def _third_party(site: Path) -> None:
    """Install (by hand, as pip would lay it out) a distribution with one working,
    one failing and two broken plugins."""
    site.mkdir(parents=True)
    (site / "fithub_extra.py").write_text(textwrap.dedent('''
        from hub.options import Option

        class Flaky:
            """A polling source that always fails: the hub must back off, not die."""
            OPTIONS = {"interval_s": Option("duration", "poll interval", default=0.2)}

            def __init__(self, name, options, hub):
                self.name, self.interval_s = name, options["interval_s"]

            def poll(self):
                raise OSError("device on fire")

        class Exploding:
            OPTIONS = {}

            def __init__(self, name, options, hub):
                raise RuntimeError("cannot start")
    '''))
    dist = site / "fithub_extra-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fithub-extra\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""
        [fithub.sources]
        flaky = fithub_extra:Flaky
        exploding = fithub_extra:Exploding
        vanished = fithub_extra_gone:Thing

        [fithub.notifiers]
        broken = fithub_extra:DoesNotExist
    """))


def _env(site: Path, home: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "FITHUB_HOME": str(home)}


def test_plugins_lists_builtins_and_third_party_with_status(tmp_path: Path) -> None:
    site, home = tmp_path / "site", tmp_path / "home"
    _third_party(site)
    out = subprocess.run([*fithub_cmd(), "plugins", "--json"], capture_output=True, text=True, timeout=120,
                         env=_env(site, home))
    assert out.returncode == 0, out.stderr
    rows = {(r["group"], r["name"]): r for r in json.loads(out.stdout)}
    for key in BUILTINS:
        assert key in rows, f"built-in plugin {key} not registered"
        assert rows[key]["loaded"], rows[key]
        assert rows[key]["from"].startswith("fithub ")
    assert rows[("sources", "watch")]["enabled"] == "inbox"  # the default config's inbox
    assert rows[("sinks", "file")]["enabled"] == "no"
    flaky = rows[("sources", "flaky")]
    assert flaky["loaded"] and flaky["from"] == "fithub-extra 1.2.3" and flaky["object"] == "fithub_extra:Flaky"
    assert not rows[("sources", "vanished")]["loaded"]
    assert "fithub_extra_gone" in rows[("sources", "vanished")]["error"]
    assert not rows[("notifiers", "broken")]["loaded"]


def test_failing_plugins_are_skipped_and_the_hub_keeps_running(tmp_path: Path, own: Path) -> None:
    site, home = tmp_path / "site", tmp_path / "home"
    _third_party(site)
    cfg = write_config(home, """
[http]
port = 0
[sources.inbox]
type = "watch"
interval_s = 0.2
settle_s = 0.2
[sources.flaky]
type = "flaky"
interval_s = 0.2
[sources.exploding]
type = "exploding"
[sources.vanished]
type = "vanished"
[notifiers.broken]
type = "broken"
""")
    daemon = DaemonProcess(home, cfg, env=_env(site, home))
    daemon.env = _env(site, home)
    daemon.start()
    try:
        port = daemon.wait_ready()
        copy_file(own / "samples" / "morning_run.gpx", home / "inbox" / "run.gpx")
        wait_for(lambda: (home / "archive" / "run.gpx").exists(), 60, "the inbox to keep working", daemon)
        assert db_counts(home / "fithub.db")["workouts"] == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            health = json.loads(r.read())
        assert health["status"] == "ok"
        assert health["sources"]["inbox"] == "ok"
        assert health["sources"]["flaky"].startswith("failing") and "device on fire" in health["sources"]["flaky"]
        skipped = health["plugins_skipped"]
        assert "cannot start" in skipped["sources.exploding"]
        assert "fithub_extra_gone" in skipped["sources.vanished"]
        assert "notifiers.broken" in skipped
        code, _ = daemon.terminate()
        assert code == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    lines = daemon.log_lines()
    fire = [l for l in lines if "device on fire" in l["msg"] and l["level"] == "error"]
    assert len(fire) == 1, "a failing source is logged once, not at every retry"
    assert any("sources.exploding" in l["msg"] for l in lines)
