"""The flywheel page (`GET /ui`, api/organism.py): one HTML document drawn on the server (SVG charts, no
script), refreshing itself. `page_data` reads what it shows (bounded queries only); `render` turns that into
HTML."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html import escape

from sqlalchemy import select

from seedcore.db.base import iso_utc
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import Monitor, PredictionRecord, Schedule
from seedcore.db.tables_jobs import TuningJob
from seedcore.db.tables_organism import JobEnergy
from seedcore.db.tables_memory import MODEL_PROMOTED, MODEL_PROMOTION_REJECTED, FlashbulbIncident
from seedcore.names import AUC
from seedcore.scoring import roc_auc

REFRESH_S = 15
SERIES_ROWS, SERIES_POINTS, SERIES_MIN_ROWS = 5_000, 40, 50  # the live AUC chart's outcomes, windows, rows each
JOBS_SHOWN, INCIDENTS_SHOWN, VERSIONS_CHARTED = 30, 20, 8


def page_data(db: Database, model_name: str, production: dict | None, evolution: dict | None,
              monitor_interval_s: float = 60.0) -> dict:
    """Everything the page shows; `production` is model_info's body, `evolution` the evolution answer; a
    monitor's next check is its last one plus `monitor_interval_s` (the server checks them all that often)."""
    with db.session() as session:
        jobs = [{"id": j.id, "state": j.state, "kind": j.kind, "trigger": j.trigger, "created_at": iso_utc(j.created_at),
                 "finished_at": iso_utc(j.finished_at), "best_auc": j.best_auc, "experiment": j.experiment_name}
                for j in session.scalars(select(TuningJob).order_by(TuningJob.created_at.desc()).limit(JOBS_SHOWN))]
        incidents = [{"id": i.id, "event_type": i.event_type, "salience": i.salience, "outcome": i.outcome,
                      "created_at": iso_utc(i.created_at), "version": i.model_version}
                     for i in session.scalars(select(FlashbulbIncident).order_by(
                         FlashbulbIncident.salience.desc(), FlashbulbIncident.id.desc()).limit(INCIDENTS_SHOWN))]
        decisions = [{"version": i.model_version, "event_type": i.event_type, "created_at": i.created_at,
                      "reason": (i.payload or {}).get("reason")}
                     for i in session.scalars(select(FlashbulbIncident).where(FlashbulbIncident.event_type.in_(
                         (MODEL_PROMOTED, MODEL_PROMOTION_REJECTED))).order_by(FlashbulbIncident.id.desc()).limit(50))]
        monitors = [{"name": m.name, "metric": m.metric, "state": m.last_state, "value": m.last_value,
                     "checked": iso_utc(m.last_checked_at), "enabled": m.enabled,
                     "next": iso_utc(m.last_checked_at + timedelta(seconds=monitor_interval_s))
                     if m.enabled and m.last_checked_at else None}
                    for m in session.scalars(select(Monitor).order_by(Monitor.name).limit(50))]
        schedules = [{"name": s.name, "cron": s.cron, "timezone": s.timezone, "next": iso_utc(s.next_run_at),
                      "enabled": s.enabled} for s in session.scalars(select(Schedule).order_by(Schedule.name).limit(50))]
        energy = [row.to_dict() for row in session.scalars(
            select(JobEnergy).where(JobEnergy.model_name == model_name).order_by(JobEnergy.ended_at.desc()).limit(10))]
    promoted = [d for d in decisions if d["event_type"] == MODEL_PROMOTED and d["version"]]
    charted = sorted({int(d["version"]) for d in promoted})[-VERSIONS_CHARTED:]
    live = {v: live_series(db, model_name, v) for v in charted}
    return {"production": production, "jobs": jobs, "incidents": incidents, "decisions": decisions[:5],
            "promotions": [{"version": int(d["version"]), "at": d["created_at"]} for d in promoted],
            "live": live, "monitors": monitors, "schedules": schedules, "energy_jobs": energy,
            "evolution": evolution}


def live_series(db: Database, model_name: str, version: int) -> list[dict]:
    """The version's live AUC over time: consecutive windows of its latest labelled outcomes (at most
    SERIES_POINTS windows of SERIES_MIN_ROWS rows or more), each at the time of its last label."""
    query = (select(PredictionRecord.labelled_at, PredictionRecord.prediction, PredictionRecord.label)
             .where(PredictionRecord.model_name == model_name, PredictionRecord.model_version == version,
                    PredictionRecord.labelled_at.is_not(None))
             .order_by(PredictionRecord.labelled_at.desc()).limit(SERIES_ROWS))
    with db.session() as session:
        rows = list(reversed(session.execute(query).all()))
    size = max(SERIES_MIN_ROWS, -(-len(rows) // SERIES_POINTS))
    points = []
    for start in range(0, len(rows) - size + 1, size):
        chunk = rows[start:start + size]
        y = [r.label for r in chunk]
        if 0 < sum(y) < len(y):
            points.append({"at": chunk[-1].labelled_at, AUC: roc_auc(y, [r.prediction for r in chunk]), "n": len(y)})
    return points


def render(data: dict) -> str:
    production = data["production"] or {}
    sections = [_production(production, data["decisions"]), _chart(data, production),
                _drift(production.get("drift")), _jobs(data["jobs"]), _watchers(data["monitors"], data["schedules"]),
                _incidents(data["incidents"]), _evolution(data["evolution"]), _energy(production.get("energy"),
                                                                                       data["energy_jobs"])]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>SeedCore flywheel</title>"
            f"<meta http-equiv='refresh' content='{REFRESH_S}'><style>{STYLE}</style></head><body>"
            f"<h1>SeedCore flywheel</h1><p class='note'>refreshes every {REFRESH_S} s</p>{''.join(sections)}"
            "</body></html>")


STYLE = ("body{font:14px system-ui,sans-serif;margin:20px;color:#222;max-width:1100px}"
         "section{border:1px solid #ddd;border-radius:6px;padding:8px 14px;margin:10px 0;overflow-x:auto}"
         "h2{font-size:16px;margin:4px 0 8px}table{border-collapse:collapse;width:100%}"
         "td,th{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;font-size:13px}"
         ".note,.empty{color:#777}.bar{fill:#4a7bd0}.warn{fill:#d0674a}")


def _section(sid: str, title: str, body: str) -> str:
    return f"<section id='{sid}'><h2>{escape(title)}</h2>{body}</section>"


def _table(rows: list[dict], columns: list[str], empty: str) -> str:
    if not rows:
        return f"<p class='empty'>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in columns)  # wraps between words
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
        return text[:8]  # an id: its first characters tell it apart on one page
    if len(text) > 19 and text[10:11] == "T" and text[4:5] == "-":
        return text[:19].replace("T", " ")  # a UTC time, to the second
    return text


def _production(p: dict, decisions: list[dict]) -> str:
    if not p.get("version"):
        return _section("production", "Production", "<p class='empty'>no model in production yet: run a sweep</p>")
    metrics = p.get("metrics") or {}
    last = decisions[0] if decisions else {}
    body = (f"<p><b>{escape(str(p.get('name')))}</b> version <b id='production-version'>{p['version']}</b>, "
            f"AUC {_fmt(metrics.get(AUC))} ({escape(str(metrics.get('source')))}), holdout "
            f"{_fmt((p.get('holdout') or {}).get(AUC))}</p><p id='gate'>last gate decision: "
            f"{escape(str(last.get('event_type', '-')))} of version {escape(str(last.get('version', '-')))}: "
            f"{escape(str(last.get('reason') or '-'))}</p>")
    return _section("production", "Production", body)


def _chart(data: dict, production: dict) -> str:
    """Live AUC over windows of outcomes per version (dots) against production's holdout AUC (dashes);
    promotions as vertical lines."""
    points = [(p["at"].timestamp(), p[AUC], v) for v, series in data["live"].items() for p in series]
    if not points:
        return _section("auc", "Live AUC against holdout", "<p class='empty'>no labelled outcomes yet</p>")
    marks = [(p["at"].timestamp(), p["version"]) for p in data["promotions"]]
    holdout = (production.get("holdout") or {}).get(AUC)
    xs = [x for x, _, _ in points] + [x for x, _ in marks]
    x0, x1 = min(xs), max(xs)
    x0, x1 = x0 - 0.05 * max(x1 - x0, 60.0), x1 + 0.05 * max(x1 - x0, 60.0)
    ys = [y for _, y, _ in points] + ([holdout] if holdout is not None else [])
    y0, y1 = max(0.0, min(ys) - 0.05), min(1.0, max(ys) + 0.05)
    sx = lambda x: 50 + 620 * (x - x0) / (x1 - x0)  # noqa: E731
    sy = lambda y: 205 - 180 * (y - y0) / (y1 - y0)  # noqa: E731
    svg = [f"<text x='2' y='{sy(y1) + 4:.0f}'>{y1:.2f}</text><text x='2' y='{sy(y0):.0f}'>{y0:.2f}</text>",
           f"<text x='50' y='222'>{_clock(x0)}</text><text x='560' y='222'>{_clock(x1)}</text>"]
    for i, (x, version) in enumerate(sorted(marks)):
        svg.append(f"<line class='promotion' x1='{sx(x):.1f}' x2='{sx(x):.1f}' y1='25' y2='205' stroke='#888'/>"
                   f"<text x='{sx(x) + 3:.1f}' y='{12 + 11 * (i % 2)}'>v{version}</text>")
    if holdout is not None:
        svg.append(f"<line class='holdout' x1='50' x2='670' y1='{sy(holdout):.1f}' y2='{sy(holdout):.1f}' "
                   "stroke='#d0674a' stroke-dasharray='4'/>")
    svg += [f"<circle class='live' cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3.5' fill='#4a7bd0'><title>v{v}: live AUC "
            f"{y:.3f}</title></circle>" for x, y, v in points]
    return _section("auc", "Live AUC against holdout (dots: live AUC over windows of outcomes; dashes: production's "
                           "holdout AUC; lines: promotions)", f"<svg width='700' height='230' role='img'>{''.join(svg)}</svg>")


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%m-%d %H:%M:%S")


def _drift(drift: dict | None) -> str:
    features = (drift or {}).get("features") or []
    if not features:
        said = escape(drift["status"]) if drift and drift.get("status") else "no logged inputs yet"
        return _section("drift", "Drift per feature (PSI)", f"<p class='empty'>{said}</p>")
    bars = []
    for i, f in enumerate(features[:20]):
        psi = float(f.get("psi") or 0.0)
        width = min(500.0, 500.0 * psi / 0.5)
        bars.append(f"<text x='0' y='{14 + 18 * i}'>{escape(str(f.get('feature')))}</text><rect class="
                    f"'{'warn' if psi >= 0.2 else 'bar'}' x='120' y='{3 + 18 * i}' width='{width:.1f}' height='13'/>"
                    f"<text x='{125 + width:.1f}' y='{14 + 18 * i}'>{psi:.3f}</text>")
    return _section("drift", "Drift per feature (PSI; 0.2 and above in red)",
                    f"<svg width='700' height='{18 * len(bars) + 6}'>{''.join(bars)}</svg>")


def _jobs(jobs: list[dict]) -> str:
    return _section("jobs", "Jobs (newest first) and their triggers",
                    _table(jobs, ["created_at", "kind", "trigger", "state", "best_auc", "finished_at", "id"], "no jobs yet"))


def _watchers(monitors: list[dict], schedules: list[dict]) -> str:
    return _section("watchers", "Monitors and schedules",
                    _table(monitors, ["name", "metric", "state", "value", "checked", "next", "enabled"], "no monitors")
                    + _table(schedules, ["name", "cron", "timezone", "next", "enabled"], "no schedules"))


def _incidents(incidents: list[dict]) -> str:
    return _section("incidents", "Flashbulb incidents by salience",
                    _table(incidents, ["salience", "event_type", "outcome", "version", "created_at", "id"],
                           "no incidents yet"))


def _evolution(evolution: dict | None) -> str:
    sweeps = (evolution or {}).get("sweeps") or []
    rows = [{**s, "live_auc_now": (s.get("accuracy") or {}).get("live_auc_now")} for s in sweeps]
    return _section("evolution", "Evolution: accuracy, smartness, adaptability",
                    _table(rows, ["version", "holdout_auc", "live_auc_now", "trials", "trials_to_99", "curve_area",
                                  "smartness", "smartness_baseline", "warm_start", "trials_saved",
                                  "adaptability_baseline"], "no sweeps yet"))


def _energy(energy: dict | None, jobs: list[dict]) -> str:
    summary = ""
    if energy:
        summary = ("<p id='energy-summary'>production: " + ", ".join(
            f"{k} {escape(_fmt(energy.get(k)))}" for k in ("cpu_seconds", "joules", "mem_bytes", "pair", "net_delta",
                                                           "break_even_at")) + "</p>")
    return _section("energy", "Energy ledger", summary + _table(
        jobs, ["ended_at", "job_id", "model_version", "cpu_seconds", "wall_seconds", "joules", "state"], "no jobs measured yet"))
