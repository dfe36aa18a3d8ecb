"""The ``fithub`` command line: a thin layer over hub/ and connectors/."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hub import paths
from hub.errors import FithubError
from hub.model import DEFAULT_PERSON

app = typer.Typer(
    help="fithub: one clean, deduplicated record of a household's fitness data.\n\n"
    "Example: fithub import ~/Downloads/garmin-export.zip && fithub activities list",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
activities_app = typer.Typer(help="List and inspect stored activities.", no_args_is_help=True)
app.add_typer(activities_app, name="activities")

# Piped output (scripts, less) gets wide lines instead of rich's 80-column default,
# so tables are not wrapped into unreadable cells.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)


@dataclass
class Context:
    home: Path
    db_url: str
    _store: object = None
    home_option: str | None = None  # as given on the command line, for `fithub run`
    db_option: str | None = None

    @property
    def store(self):
        if self._store is None:
            from hub.storage import Store

            self.home.mkdir(parents=True, exist_ok=True)
            self._store = Store(self.db_url, self.home)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


@app.callback()
def main(
    ctx: typer.Context,
    db: Annotated[
        Optional[str],
        typer.Option("--db", help="Database URL, e.g. postgresql://user@host/fithub. Env: FITHUB_DATABASE_URL. "
                     "Default: SQLite file fithub.db in the data directory."),
    ] = None,
    home: Annotated[
        Optional[str],
        typer.Option("--home", help="Data directory (database, raw file archive). Env: FITHUB_HOME. "
                     "Default: $XDG_DATA_HOME/fithub, i.e. ~/.local/share/fithub."),
    ] = None,
) -> None:
    data_home = paths.data_home(home)
    context = Context(home=data_home, db_url=paths.database_url(db, data_home), home_option=home, db_option=db)
    ctx.obj = context
    ctx.call_on_close(context.close)


def _fail(message: str) -> typer.Exit:
    err.print(f"error: {message}", markup=False)
    return typer.Exit(1)


def _store(ctx: typer.Context):
    try:
        return ctx.obj.store
    except FithubError as exc:
        raise _fail(str(exc)) from None


# --------------------------------------------------------------------------- import


def _import_exports(store, paths: list[str], person: str, summary) -> list[str]:
    """Import the paths a stream importer claims as a whole (a Garmin Connect
    account export, an Apple Health export); return the others, which go file by file."""
    candidates = {p for p in paths if p.lower().endswith((".zip", ".xml")) and Path(p).is_file()}
    if not candidates:
        return paths  # no plugin discovery for plain files
    from hub.decoding import registry
    from hub.importer import claiming, import_path, read_head, stream_importers

    importers = stream_importers()
    reg = registry()
    rest = []
    for given in paths:
        importer = claiming(importers, Path(given), read_head(Path(given))) if given in candidates else None
        if importer is None:
            rest.append(given)
            continue
        # A whole export (gigabytes): a progress bar by bytes read.
        bar = Progress(TextColumn(f"importing {Path(given).name}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                       TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal)
        with bar:
            task = bar.add_task("", total=None)
            result = import_path(
                store, Path(given), name=given, person=person, source="file", decoders=reg.decoders, sniff=reg.sniff,
                importers=[importer], progress=lambda done, total: bar.update(task, completed=done, total=total or None),
            )
        for outcome in result.outcomes:
            summary.add(outcome)
    return rest


@app.command("import")
def import_(
    ctx: typer.Context,
    path: Annotated[list[str], typer.Argument(help="Files, folders (searched recursively), .zip or .gz archives, "
                                              "an Apple Health export.zip/export.xml, a Garmin Connect account export.")],
    person: Annotated[str, typer.Option("--person", "-p", help="Household member the files belong to.")] = DEFAULT_PERSON,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")] = False,
) -> None:
    """Import activity files (FIT, GPX, TCX, Garmin Connect JSON, Garmin monitoring/sleep FIT) and whole exports
    (Apple Health, Garmin Connect). Importing the same bytes again adds nothing; a newer export adds only what is new.

    Example: fithub import ~/garmin/Activity ride.fit export.zip --person alice
    """
    from hub.decoding import registry
    from hub.inputs import count_inputs, iter_payloads
    from hub.pipeline import Summary, ingest_all

    store = _store(ctx)
    reg = registry()
    summary = Summary()
    try:
        path = _import_exports(store, path, person, summary)
    except FithubError as exc:
        raise _fail(str(exc)) from None
    total = count_inputs(path)
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    try:
        with progress:
            task = progress.add_task("", total=total)
            outcomes = ingest_all(
                store,
                iter_payloads(path),
                decoders=reg.decoders,
                sniff=reg.sniff,
                person=person,
                on_file=lambda p: progress.update(task, advance=1, description=Path(p).name),
            )
            for outcome in outcomes:
                summary.add(outcome)
    except FithubError as exc:
        raise _fail(str(exc)) from None

    if as_json:
        out.print(json.dumps(summary.as_json(), ensure_ascii=False), markup=False)
        return
    table = Table(title="Import summary", show_header=True)
    table.add_column("result")
    table.add_column("files", justify="right")
    table.add_row("imported", str(len(summary.imported)))
    table.add_row("merged into existing", str(len(summary.merged)))
    table.add_row("already present", str(len(summary.duplicates)))
    table.add_row("rejected", str(len(summary.rejected)))
    out.print(table)
    stored = summary.imported + summary.merged
    if stored:
        activities = sum(len(i.activity_ids) for i in stored)
        merged = sum(len(i.merged_ids) for i in stored)
        measurements = sum(i.measurements for i in stored)
        out.print(f"{_count(activities, 'new activity', 'new activities')}, "
                  f"{_count(merged, 'merged into an existing one', 'merged into existing ones')}, "
                  f"{_count(measurements, 'measurement', 'measurements')}.")
    for imported in stored:
        for warning in imported.warnings:
            out.print(f"warning: {imported.path}: {warning}", markup=False)
    for rejected in summary.rejected:
        out.print(f"rejected: {rejected.path}: {rejected.reason}", markup=False)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


# --------------------------------------------------------------------------- activities


def _parse_when(value: str | None, *, end: bool) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD) or ISO 8601 time") from None
    if len(value) <= 10 and end:  # a bare date as the upper bound includes that whole day
        parsed = datetime.combine(parsed.date(), time.max)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(timedelta(seconds=round(seconds)))


def _fmt_km(metres: float | None) -> str:
    return "-" if metres is None else f"{metres / 1000:.2f}"


@activities_app.command("list")
def activities_list(
    ctx: typer.Context,
    person: Annotated[Optional[str], typer.Option("--person", "-p", help="Only this household member.")] = None,
    sport: Annotated[Optional[str], typer.Option("--sport", "-s", help="Only this sport (running, cycling, ...).")] = None,
    since: Annotated[Optional[str], typer.Option("--from", help="Start on or after this date/time (UTC).")] = None,
    until: Annotated[Optional[str], typer.Option("--to", help="Start on or before this date/time (UTC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """List stored activities, oldest first.

    Example: fithub activities list --person alice --sport running --from 2024-01-01 --json
    """
    from connectors.export import activity_to_dict

    rows = _store(ctx).list_activities(
        person=person, sport=sport, start_from=_parse_when(since, end=False), start_to=_parse_when(until, end=True)
    )
    if as_json:
        items = []
        for row in rows:
            item = activity_to_dict(row.activity, activity_id=row.id, with_samples=False)
            item["samples"] = row.sample_count
            items.append(item)
        out.print(json.dumps(items, ensure_ascii=False), markup=False)
        return
    table = Table(show_header=True)
    for col, justify in (("id", "right"), ("person", "left"), ("start (UTC)", "left"), ("sport", "left"),
                         ("duration", "right"), ("km", "right"), ("avg HR", "right"), ("samples", "right")):
        table.add_column(col, justify=justify)
    for row in rows:
        a = row.activity
        sport_name = a.sport + (f"/{a.sub_sport}" if a.sub_sport and a.sub_sport != "generic" else "")
        table.add_row(
            str(row.id), a.person, a.start.strftime("%Y-%m-%d %H:%M"), sport_name, _fmt_duration(a.elapsed_s),
            _fmt_km(a.distance_m), "-" if a.avg_hr_bpm is None else f"{a.avg_hr_bpm:.0f}", str(row.sample_count),
        )
    out.print(table)
    out.print(_count(len(rows), "activity", "activities"))


@activities_app.command("show")
def activities_show(
    ctx: typer.Context,
    activity_id: Annotated[int, typer.Argument(metavar="ID", help="Activity id from `fithub activities list`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (summary, laps, sets, sources).")] = False,
) -> None:
    """Show one activity: summary, laps, strength sets, swim lengths and sources.

    Example: fithub activities show 12
    """
    from connectors.export import activity_to_dict

    store = _store(ctx)
    try:
        stored = store.get_activity(activity_id)
    except FithubError as exc:
        raise _fail(str(exc)) from None
    sources = [_version_dict(v) for v in store.versions(activity_id)]
    a = stored.activity
    if as_json:
        item = activity_to_dict(a, activity_id=stored.id, with_samples=False)
        item["samples"] = stored.sample_count
        item["sources"] = sources
        item["channel_sources"] = stored.channel_sources
        item["stream_channels"] = list(a.samples.columns)
        out.print(json.dumps(item, ensure_ascii=False), markup=False)
        return
    summary = Table(show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column()
    local = ""
    if a.utc_offset_s is not None:
        local = f"  (local {(a.start + timedelta(seconds=a.utc_offset_s)).strftime('%Y-%m-%d %H:%M:%S')})"
    fields = [
        ("id", str(stored.id)), ("person", a.person), ("name", a.name or "-"),
        ("sport", a.sport + (f" / {a.sub_sport}" if a.sub_sport else "")),
        ("start (UTC)", a.start.strftime("%Y-%m-%d %H:%M:%S") + local),
        ("elapsed", _fmt_duration(a.elapsed_s)), ("moving", _fmt_duration(a.moving_s)),
        ("distance", f"{_fmt_km(a.distance_m)} km"),
        ("ascent / descent", f"{_num(a.ascent_m, 'm')} / {_num(a.descent_m, 'm')}"),
        ("energy", _num(None if a.energy_j is None else a.energy_j / 4184, "kcal")),
        ("heart rate avg / max", f"{_num(a.avg_hr_bpm, 'bpm')} / {_num(a.max_hr_bpm, 'bpm')}"),
        ("power avg / max", f"{_num(a.avg_power_w, 'W')} / {_num(a.max_power_w, 'W')}"),
        ("cadence avg / max", f"{_num(a.avg_cadence_rpm, 'rpm')} / {_num(a.max_cadence_rpm, 'rpm')}"),
        ("speed avg / max", f"{_num(_kmh(a.avg_speed_mps), 'km/h', 1)} / {_num(_kmh(a.max_speed_mps), 'km/h', 1)}"),
        ("device", " ".join(str(x) for x in (a.device.manufacturer, a.device.product) if x) if a.device else "-"),
        ("samples", f"{stored.sample_count} ({', '.join(a.samples.columns) or 'none'})"),
        ("swim lengths", str(len(a.lengths))),
        ("HRV beats", str(len(a.hrv_rr_s))),
    ]
    for k, v in fields:
        summary.add_row(k, v)
    out.print(summary)
    if a.laps:
        laps = Table(title="Laps")
        for col in ("#", "start (UTC)", "duration", "km", "avg HR", "avg W"):
            laps.add_column(col, justify="right")
        for i, lap in enumerate(a.laps, 1):
            laps.add_row(str(i), lap.start.strftime("%H:%M:%S"), _fmt_duration(lap.elapsed_s), _fmt_km(lap.distance_m),
                         _num(lap.avg_hr_bpm, ""), _num(lap.avg_power_w, ""))
        out.print(laps)
    if a.sets:
        sets = Table(title="Strength sets")
        for col in ("#", "type", "exercise", "reps", "kg", "duration"):
            sets.add_column(col)
        for i, s in enumerate(a.sets, 1):
            sets.add_row(str(i), s.set_type, s.category or "-", "-" if s.reps is None else str(s.reps),
                         _num(s.weight_kg, "", 1), _fmt_duration(s.duration_s))
        out.print(sets)
    for w in a.warnings:
        out.print(f"warning: {w}", markup=False)
    out.print("sources:")
    for s in sources:
        supplied = ", ".join(s["channels"]) or "-"
        out.print(f"  {s['key'][:20]}  {s['format']:4} {s['name']}  (supplies: {supplied})", markup=False)


def _version_dict(v) -> dict:
    return {
        "key": v.key,
        "sha256": v.file_sha256,
        "name": v.name,
        "format": v.fmt,
        "source": v.source,
        "start": v.start.isoformat(),
        "elapsed_s": v.elapsed_s,
        "distance_m": v.distance_m,
        "samples": v.sample_count,
        "shift_s": v.shift_s,
        "channels": list(v.channels),
    }


@activities_app.command("sources")
def activities_sources(
    ctx: typer.Context,
    activity_id: Annotated[int, typer.Argument(metavar="ID", help="Activity id from `fithub activities list`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of the versions.")] = False,
) -> None:
    """List the source versions merged into one activity and what each supplies.

    Example: fithub activities sources 12
    """
    store = _store(ctx)
    try:
        store.get_activity(activity_id)
        versions = [_version_dict(v) for v in store.versions(activity_id)]
    except FithubError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        out.print(json.dumps(versions, ensure_ascii=False), markup=False)
        return
    table = Table(show_header=True)
    for col in ("version", "format", "file", "start (UTC)", "duration", "km", "samples", "supplies"):
        table.add_column(col)
    for v in versions:
        shift = f" (shifted {v['shift_s'] / 3600:+g} h)" if v["shift_s"] else ""
        table.add_row(v["key"][:20], v["format"], v["name"], v["start"][:19].replace("T", " ") + shift,
                      _fmt_duration(v["elapsed_s"]), _fmt_km(v["distance_m"]), str(v["samples"]),
                      ", ".join(v["channels"]) or "-")
    out.print(table)


@activities_app.command("split")
def activities_split(
    ctx: typer.Context,
    activity_id: Annotated[int, typer.Argument(metavar="ID", help="The activity holding the wrongly merged version.")],
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Version key, SHA-256 prefix or file name (see `activities sources`).")],
) -> None:
    """Detach a wrongly merged source version into an activity of its own.

    The decision is remembered: re-importing or reprocessing never merges them again.

    Example: fithub activities split 12 3f9a2c
    """
    try:
        new_id = _store(ctx).split(activity_id, source)
    except FithubError as exc:
        raise _fail(str(exc)) from None
    out.print(f"split {source} from activity {activity_id} into new activity {new_id}", markup=False)


@activities_app.command("merge")
def activities_merge(
    ctx: typer.Context,
    keep: Annotated[int, typer.Argument(metavar="ID", help="The activity to keep.")],
    other: Annotated[int, typer.Argument(metavar="ID", help="The activity merged into it (its id disappears).")],
) -> None:
    """Merge two activities of the same workout by hand.

    All source versions are kept and the best data per channel is chosen again.
    The decision is remembered across re-imports and reprocessing.

    Example: fithub activities merge 12 15
    """
    if keep == other:
        raise _fail("give two different activity ids")
    try:
        merged = _store(ctx).merge_workouts(keep, other)
    except FithubError as exc:
        raise _fail(str(exc)) from None
    out.print(f"merged activity {other} into {merged}", markup=False)


def _kmh(mps: float | None) -> float | None:
    return None if mps is None else mps * 3.6


def _num(value: float | None, unit: str, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f} {unit}".strip()


# --------------------------------------------------------------------------- export


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    target: Annotated[Optional[str], typer.Argument(
        metavar="ID|DIR", help="Activity id; with --all, the folder to write into.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="fit, gpx, tcx, json or csv.")] = "fit",
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="File to write (default: activity-ID.EXT; '-' for stdout).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Export every stored activity into the folder DIR.")] = False,
) -> None:
    """Export one activity, or all of them, as FIT, GPX, TCX, JSON or CSV.

    Examples: fithub export 12 --format gpx -o ride.gpx;  fithub export --all --format fit backup/
    """
    from connectors.export import FORMATS, export

    if fmt not in FORMATS:
        raise _fail(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ext = FORMATS[fmt].extension
    store = _store(ctx)
    if all_:
        if not target:
            raise _fail("--all needs the folder to write into, e.g. fithub export --all --format gpx out/")
        folder = Path(target)
        folder.mkdir(parents=True, exist_ok=True)
        count = 0
        for row in store.list_activities():
            activity = store.get_activity(row.id).activity
            name = f"{activity.start:%Y%m%d-%H%M%S}-{activity.sport}-{row.id}.{ext}"
            _write_atomic(folder / name, export(activity, fmt))
            count += 1
        out.print(f"{count} activities written to {folder}", markup=False)
        return
    if target is None:
        raise _fail("give an activity id (see `fithub activities list`) or --all DIR")
    try:
        activity_id = int(target)
    except ValueError:
        raise _fail(f"{target!r} is not an activity id; to export everything use --all {target}") from None
    try:
        activity = store.get_activity(activity_id).activity
        data = export(activity, fmt)
    except FithubError as exc:
        raise _fail(str(exc)) from None
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    path = Path(output or f"activity-{activity_id}.{ext}")
    _write_atomic(path, data)
    err.print(f"wrote {path} ({len(data)} bytes)", markup=False)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# --------------------------------------------------------------------------- reprocess, persons, measurements


@app.command("reprocess")
def reprocess(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Decode every archived original file again with the current decoders.

    Use after upgrading fithub: activities are rebuilt from the raw archive, so
    improvements to a decoder reach data imported long ago. Files the new decoders
    reject keep their existing records.

    Example: fithub reprocess
    """
    from hub.decoding import registry
    from hub.reprocess import reprocess_all

    try:
        result = reprocess_all(_store(ctx), registry().decoders)
    except FithubError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        out.print(json.dumps(result), markup=False)
        return
    out.print(f"{result['files']} files reprocessed, {result['activities']} activities, "
              f"{len(result['failed'])} kept as they were", markup=False)
    for item in result["failed"]:
        out.print(f"kept: {item['name']}: {item['reason']}", markup=False)


@app.command("persons")
def persons(ctx: typer.Context) -> None:
    """List the household members that have data.

    Example: fithub persons
    """
    for name in _store(ctx).persons():
        out.print(name, markup=False)


# A group so that `daily` and `priority` can hang below it; called bare it lists, as before.
measurements_app = typer.Typer(help="Body and daily measurements.", no_args_is_help=False)
app.add_typer(measurements_app, name="measurements")


@measurements_app.callback(invoke_without_command=True)
def measurements(
    ctx: typer.Context,
    person: Annotated[Optional[str], typer.Option("--person", "-p", help="Only this household member.")] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", "-k", help="Only this kind, e.g. weight_kg.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List body and daily measurements (weight, body composition, ...).

    Example: fithub measurements --kind weight_kg   (subcommands: daily, priority)
    """
    if ctx.invoked_subcommand is not None:
        return
    rows = _store(ctx).measurements(person=person, kind=kind)
    if as_json:
        items = [{"person": m.person, "kind": m.kind, "time": m.time.isoformat(), "value": m.value} for m in rows]
        out.print(json.dumps(items), markup=False)
        return
    table = Table(show_header=True)
    for col in ("person", "time (UTC)", "kind", "value"):
        table.add_column(col)
    for m in rows:
        table.add_row(m.person, m.time.strftime("%Y-%m-%d %H:%M:%S"), m.kind, f"{m.value:g}")
    out.print(table)


@measurements_app.command("daily")
def measurements_daily(
    ctx: typer.Context,
    type_: Annotated[str, typer.Option("--type", "-t", help="steps, distance, cycling_distance, active_energy, "
                                       "basal_energy or flights (or a kind name such as active_energy_j).")],
    person: Annotated[str, typer.Option("--person", "-p", help="Household member.")] = DEFAULT_PERSON,
    since: Annotated[Optional[str], typer.Option("--from", help="First local day (YYYY-MM-DD).")] = None,
    until: Annotated[Optional[str], typer.Option("--to", help="Last local day (YYYY-MM-DD), included.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object {date: total}.")] = False,
) -> None:
    """Daily totals of an additive type, overlapping sources counted once (by source priority).

    Example: fithub measurements daily --type steps --from 2024-01-01 --to 2024-01-31
    """
    from connectors.apple_health.records import DAILY_TYPES
    from hub.storage import health

    kind = DAILY_TYPES.get(type_)
    if kind is None:
        raise _fail(f"unknown --type {type_!r}; one of: {', '.join(sorted(DAILY_TYPES))}")
    try:
        first = datetime.strptime(since, "%Y-%m-%d").date() if since else None
        last = datetime.strptime(until, "%Y-%m-%d").date() if until else None
    except ValueError:
        raise typer.BadParameter("--from/--to take a date, YYYY-MM-DD") from None
    totals = health.daily_totals(_store(ctx).engine, person, kind, first, last)
    if as_json:
        out.print(json.dumps({d.isoformat(): round(v, 6) for d, v in totals.items()}), markup=False)
        return
    table = Table(show_header=True)
    table.add_column("day (local)")
    table.add_column(kind, justify="right")
    for day, value in totals.items():
        table.add_row(day.isoformat(), f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}")
    out.print(table)


@measurements_app.command("priority")
def measurements_priority(
    ctx: typer.Context,
    sources: Annotated[Optional[list[str]], typer.Argument(help="Source names, best first, to make the order.")] = None,
    person: Annotated[str, typer.Option("--person", "-p", help="Household member.")] = DEFAULT_PERSON,
    reset: Annotated[bool, typer.Option("--reset", help="Forget the set order (back to watch, phone, others).")] = False,
) -> None:
    """Show or set which source wins where records overlap (for daily totals).

    Example: fithub measurements priority "Ann's Apple Watch" "Ann's iPhone"
    """
    from hub.storage import health

    engine = _store(ctx).engine
    if sources or reset:
        health.set_priority(engine, person, [] if reset else list(sources or []))
    for rank, (name, _, explicit) in enumerate(health.priorities(engine, person), start=1):
        out.print(f"{rank}. {name}{'' if explicit else '  (default order)'}", markup=False)


@measurements_app.command("unassigned")
def measurements_unassigned(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Also the readings already assigned.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Readings from shared devices (a bathroom scale) that no person's rule claimed.

    Example: fithub measurements unassigned   (then: fithub measurements assign 3 4 --person alice)
    """
    from hub.storage import unassigned

    try:
        rows = unassigned.listing(_store(ctx).engine, include_assigned=show_all)
    except FithubError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        items = [{"id": u.id, "device": u.device, "time": u.time.isoformat(), "kind": u.kind, "value": u.value,
                  "extra": u.extra, "source": u.source, "person": u.person} for u in rows]  # fmt: skip
        out.print(json.dumps(items), markup=False)
        return
    table = Table(show_header=True)
    for col in ("id", "time (UTC)", "device", "kind", "value", "extra", *(("person",) if show_all else ())):
        table.add_column(col)
    for u in rows:
        extra = ", ".join(f"{k}={v:g}" for k, v in sorted(u.extra.items()))
        table.add_row(str(u.id), u.time.strftime("%Y-%m-%d %H:%M:%S"), u.device, u.kind, f"{u.value:g}", extra,
                      *((u.person or "",) if show_all else ()))  # fmt: skip
    out.print(table)


@measurements_app.command("assign")
def measurements_assign(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(help="Ids from `fithub measurements unassigned`.")],
    person: Annotated[str, typer.Option("--person", "-p", help="Household member the readings belong to.")],
) -> None:
    """Give unassigned readings to a person: they become that person's measurements.

    Example: fithub measurements assign 3 4 --person alice
    """
    from hub.storage import unassigned

    try:
        result = unassigned.assign(_store(ctx).engine, ids, person)
    except (FithubError, ValueError) as exc:
        raise _fail(str(exc)) from None
    out.print(f"assigned to {person}: {len(result.assigned)}"
              + (f", already theirs: {len(result.unchanged)}" if result.unchanged else ""), markup=False)



# --------------------------------------------------------------------------- config

config_app = typer.Typer(help="Check the hub's configuration, or print a commented example.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", help="Config file (TOML). Default: the one `fithub run` would use "
                     "($FITHUB_CONFIG, <data>/config.toml, $XDG_CONFIG_HOME/fithub/config.toml, /etc/fithub/config.toml)."),
    ] = None,
) -> None:
    """Validate the configuration without starting anything; every problem is listed (exit status 2).

    Example: fithub config check --config /etc/fithub/config.toml
    """
    cfg = _load_config(ctx, config)  # prints every problem and exits 2 on any
    counts = ", ".join(
        _count(len(cfg.enabled(group)), group[:-1], group) for group in ("sources", "sinks", "notifiers")
    )
    out.print(f"OK: {cfg.path or 'built-in defaults'} ({counts})", markup=False)


@config_app.command("example")
def config_example() -> None:
    """Print a commented example config with every key, its default and its meaning.

    Example: fithub config example > config.toml
    """
    from hub.config import example

    sys.stdout.write(example())


# --------------------------------------------------------------------------- daemon


def _load_config(ctx: typer.Context, config_path: Path | None, *, strict: bool = True):
    """The config, with --home/--db (when given) overriding the file's hub.home and
    hub.database. ``strict=False`` (``fithub run``): a section whose plugin fails to
    load is skipped with a log line instead of stopping the hub."""
    import os

    from hub import config as hubconfig

    env = dict(os.environ)
    if ctx.obj.home_option:
        env["FITHUB_HUB__HOME"] = ctx.obj.home_option
    if ctx.obj.db_option:
        env["FITHUB_HUB__DATABASE"] = ctx.obj.db_option
    try:
        return hubconfig.load(config_path, env=env, skip_broken_plugins=not strict)
    except FithubError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)  # one problem per line, unwrapped
        raise typer.Exit(2) from None


@app.command("run")
def run(
    ctx: typer.Context,
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", help="Config file (TOML). Default: $FITHUB_CONFIG, else $FITHUB_HOME/config.toml, "
                     "$XDG_CONFIG_HOME/fithub/config.toml or /etc/fithub/config.toml if present, else built-in "
                     "defaults: SQLite in the data directory, the folder <data>/inbox watched."),
    ] = None,
) -> None:
    """Run the hub: watch folders and poll sources, import, deliver events. Stops cleanly on SIGTERM/Ctrl-C."""
    from hub import logs
    from hub.daemon import Daemon

    cfg = _load_config(ctx, config, strict=False)
    logs.setup(cfg.hub.get("log_level", "info"), cfg.hub.get("log_format", "json"))
    import logging

    logging.getLogger("fithub").info("config: %s", cfg.path or "built-in defaults")
    try:
        code = Daemon(cfg).run_forever()
    except FithubError as exc:
        logging.getLogger("fithub").error("cannot start: %s", exc)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """How the hub is doing: sources, imports, rejects, events waiting for delivery."""
    from hub.status import snapshot

    snap = snapshot(_store(ctx).engine)
    if as_json:
        out.print_json(data=snap.as_json())
        return
    files = sum(snap.files_by_source.values())
    rejected = sum(snap.rejected_by_source.values())
    out.print(f"{_count(snap.workouts, 'workout', 'workouts')}, {_count(snap.measurements, 'measurement', 'measurements')}, "
              f"{_count(files, 'file', 'files')} imported, {rejected} rejected", markup=False)
    pending, dead = sum(snap.outbox_pending.values()), sum(snap.outbox_dead.values())
    out.print(f"outbox: {pending} waiting, {dead} dead" + (" (see: fithub outbox list --dead)" if dead else ""), markup=False)
    if not snap.sources:
        out.print("sources: none has run yet (is `fithub run` running?)", markup=False)
        return
    table = Table("source", "kind", "state", "last success", "items", "errors", box=None)
    for s in snap.sources:
        state = "ok" if s.ok else f"failing x{s.failures}: {s.last_error}"
        last = s.last_success_at.strftime("%Y-%m-%d %H:%M:%S UTC") if s.last_success_at else "never"
        table.add_row(s.name, s.kind, state, last, str(s.items_total), str(s.errors_total))
    out.print(table)


@app.command("plugins")
def plugins_cmd(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Config file, to show which plugins it enables.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Installed plugins (sources, decoders, sinks, notifiers), where they come from, whether enabled."""
    from hub.plugins import discover_all

    found = discover_all()
    enabled: dict[tuple[str, str], list[str]] = {}
    try:
        cfg = _load_config(ctx, config, strict=False)
    except typer.Exit:
        cfg = None  # a broken config still lets the user see what is installed
    if cfg is not None:
        for group in ("sources", "sinks", "notifiers"):
            for name, section in getattr(cfg, group).items():
                if section.enabled:
                    enabled.setdefault((group, section.type), []).append(name)
    rows = []
    for group, infos in found.items():
        for name, info in sorted(infos.items()):
            if group == "decoders":
                use = "yes" if info.error is None else "no"
            else:
                use = ", ".join(enabled.get((group, name), [])) or "no"
            origin = f"{info.distribution or '?'} {info.version or ''}".strip()
            rows.append({"group": group, "name": name, "from": origin, "object": info.value,
                         "loaded": info.error is None, "error": info.error, "enabled": use})
    if as_json:
        out.print_json(data=rows)
        return
    table = Table("group", "name", "from", "enabled (config sections)", "status", box=None)
    for r in rows:
        table.add_row(r["group"], r["name"], r["from"], r["enabled"], "ok" if r["loaded"] else f"failed: {r['error']}")
    out.print(table)


# --------------------------------------------------------------------------- outbox

outbox_app = typer.Typer(help="Events waiting for sinks and notifiers, and the dead-letter list.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("list")
def outbox_list(
    ctx: typer.Context,
    dead: Annotated[bool, typer.Option("--dead", help="Only the dead letters (events given up on).")] = False,
    consumer: Annotated[Optional[str], typer.Option("--consumer", help="Only this sink or notifier.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List events waiting for delivery (with their retry state), or with --dead the parked ones.

    Example: fithub outbox list --dead
    """
    from hub.outbox import Outbox

    box = Outbox(_store(ctx))
    rows = box.dead(consumer) if dead else box.pending(consumer)
    if as_json:
        out.print(json.dumps([r.as_json() for r in rows], ensure_ascii=False), markup=False)
        return
    if not dead:
        depth = {name: n for name, n in box.depth().items() if consumer in (None, name)}
        waiting = ", ".join(f"{name} {n}" for name, n in depth.items()) or "no sinks or notifiers registered yet"
        out.print(f"waiting: {waiting}", markup=False)
    if not rows:
        out.print("no dead letters" if dead else "nothing pending", markup=False)
        return
    table = Table("event", "consumer", "kind", "person", "attempts", "next try (UTC)" if not dead else "given up (UTC)",
                  "last error", box=None)
    for r in rows:
        when = r.updated_at if dead else r.next_at
        table.add_row(str(r.event_id), r.consumer, r.kind, r.person or "-", str(r.attempts),
                      when.strftime("%Y-%m-%d %H:%M:%S"), r.last_error or "")
    out.print(table)


@outbox_app.command("retry")
def outbox_retry(
    ctx: typer.Context,
    event_ids: Annotated[Optional[list[int]], typer.Argument(help="Event ids from `fithub outbox list --dead`.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter (of --consumer, if given).")] = False,
    consumer: Annotated[Optional[str], typer.Option("--consumer", help="Only this sink or notifier.")] = None,
) -> None:
    """Queue dead letters for delivery again, with a fresh retry budget. The running hub sends them.

    Example: fithub outbox retry 41 42 --consumer phone   or   fithub outbox retry --all
    """
    from hub.outbox import Outbox

    if bool(event_ids) == all_:
        raise _fail("give event ids or --all (not both)")
    box = Outbox(_store(ctx))
    count = box.retry(None if all_ else list(event_ids), consumer=consumer)
    if event_ids and count == 0:
        raise _fail(f"no dead letter with event id {', '.join(map(str, event_ids))}"
                    + (f" for {consumer}" if consumer else "") + " (see: fithub outbox list --dead)")
    out.print(f"{_count(count, 'dead letter', 'dead letters')} queued for delivery again", markup=False)


# --------------------------------------------------------------------------- ble

ble_app = typer.Typer(help="Bluetooth LE fitness sensors: find them, record a session.", no_args_is_help=True)
app.add_typer(ble_app, name="ble")


@ble_app.command("scan")
def ble_scan(
    seconds: Annotated[float, typer.Option("--seconds", help="How long to listen.")] = 8.0,
    adapter: Annotated[Optional[str], typer.Option("--adapter", help="BlueZ adapter, e.g. hci1.")] = None,
    no_connect: Annotated[bool, typer.Option("--no-connect", help="Only listen; do not connect to read battery and measurements.")] = False,
    all_devices: Annotated[bool, typer.Option("--all", help="Also list devices without a fitness service.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What is around: fitness services each device offers, signal strength (RSSI), battery.

    Example: fithub ble scan --seconds 15
    """
    import asyncio
    from dataclasses import asdict

    from drivers.ble.commands import bleak_factory, scan_devices

    try:
        found = asyncio.run(scan_devices(bleak_factory(adapter), seconds, connect=not no_connect))
    except FithubError as exc:
        raise _fail(str(exc)) from None
    shown = [f for f in found if all_devices or f.fitness]
    if as_json:
        out.print(json.dumps([asdict(f) | {"fitness": f.fitness} for f in shown], indent=2), markup=False)
        return
    table = Table("address", "name", "RSSI", "services", "measurements", "battery", "note")
    for f in shown:
        table.add_row(f.address, f.name or "-", "-" if f.rssi is None else f"{f.rssi} dBm", ", ".join(f.services) or "-",
                      ", ".join(f.measurements) or "-", "-" if f.battery_pct is None else f"{f.battery_pct} %", f.error or "")
    out.print(table)
    hidden = len(found) - len(shown)
    out.print(f"{_count(len(shown), 'fitness device', 'fitness devices')}"
              + (f" ({hidden} other devices hidden; --all shows them)" if hidden else ""), markup=False)


@ble_app.command("record")
def ble_record(
    ctx: typer.Context,
    sensor: Annotated[Optional[list[str]], typer.Option("--sensor", help="Address (AA:BB:CC:DD:EE:FF) or service name "
                      "(heart_rate, cycling_power, cycling_speed_cadence, running_speed_cadence, fitness_machine); "
                      "repeat for several. Default: any strap, power meter, speed/cadence sensor, footpod and trainer.")] = None,
    person: Annotated[str, typer.Option("--person", help="Household member the session belongs to.")] = DEFAULT_PERSON,
    idle_gap: Annotated[float, typer.Option("--idle-gap", help="Seconds without activity that end the session.")] = 120.0,
    adapter: Annotated[Optional[str], typer.Option("--adapter", help="BlueZ adapter, e.g. hci1.")] = None,
    circumference: Annotated[float, typer.Option("--circumference", help="Wheel circumference in metres.")] = 2.105,
) -> None:
    """Record one session in the foreground with a live line of values; Ctrl-C (or the idle gap) ends it
    and stores it like any imported file (merged with the watch's copy of the same workout).

    Example: fithub ble record --sensor heart_rate --sensor cycling_power --person alice
    """
    import asyncio

    from drivers.ble.commands import bleak_factory, record_session
    from drivers.ble.manager import ManagerSettings
    from drivers.ble.recorder import pipeline_saver

    sensors = sensor or ["heart_rate", "cycling_power", "cycling_speed_cadence", "running_speed_cadence", "fitness_machine"]
    live = sys.stderr.isatty()

    def show(line: str) -> None:
        if live:
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()

    try:
        recorder = asyncio.run(record_session(
            bleak_factory(adapter), sensors, pipeline_saver(_store(ctx)), person=person, idle_gap_s=idle_gap,
            settings=ManagerSettings(circumference_m=circumference), show=show,
        ))
    except FithubError as exc:
        raise _fail(str(exc)) from None
    if live:
        sys.stderr.write("\n")
    if not recorder.results:
        out.print("nothing recorded (no sensor sent any activity)", markup=False)
        return
    for result, outcome in recorder.results:
        ids = getattr(outcome, "activity_ids", None) or getattr(outcome, "merged_ids", None) or []
        what = f"activity {', '.join(map(str, ids))}" if ids else type(outcome).__name__.lower()
        channels = ", ".join(f"{ch}: {addr}" for ch, addr in result.combined.sources.items())
        out.print(f"stored {result.activity.sport} session of {_fmt_duration(result.activity.elapsed_s)} as {what} ({channels})",
                  markup=False)


if __name__ == "__main__":  # pragma: no cover
    app()
