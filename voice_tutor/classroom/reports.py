"""Progress reports of a class or a learner: CSV tables, PNG plots, an HTML page and a PDF.

``build_report(store, "5B", out_dir)`` writes, for everyone in scope:

- ``*.csv``: mastery history (every answer as the record keeps it: right or
  not, first try, hints, mastery after), current mastery, knowledge gaps,
  answers per skill (right, right first time, right after hints, hints used),
  time on task per session and per learner, reviews due, answer accuracy and
  first-try rate per question, common questions, misconceptions, drop-off,
  the tutor's latency per turn;
- ``*.png``: mastery over time per learner, the class's mastery map, time on
  task, accuracy per question, latency per stage (matplotlib, Agg backend);
- ``report.html`` (tables and the plots embedded) and ``report.pdf``
  (a summary page, then the plots; matplotlib's PdfPages).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: no display, same output everywhere

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from voice_tutor.classroom import analytics  # noqa: E402
from voice_tutor.learning.mastery import MASTERY_THRESHOLD  # noqa: E402
from voice_tutor.store import ClassNotFound, LearnerNotFound, Store  # noqa: E402

FORMATS = ("html", "csv", "pdf")


@dataclass
class Report:
    title: str
    learners: list[str]
    tables: dict[str, list[dict]] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def resolve_scope(store: Store, target: str) -> tuple[str, list[str]]:
    """A class name gives its members; else a learner's name gives that learner."""
    try:
        room = store.get_class(target)
    except ClassNotFound:
        pass
    else:
        teacher = f" (teacher: {room.teacher})" if room.teacher else ""
        return f"Class {room.name}{teacher}", list(room.members)
    try:
        store.get_learner(target)
    except LearnerNotFound:
        raise LearnerNotFound(target) from None
    return f"Learner {target}", [target]


def collect(store: Store, target: str, *, lessons: dict | None = None, now: datetime | None = None) -> Report:
    now = now or datetime.now(UTC)
    lessons = lessons or {}
    title, learners = resolve_scope(store, target)
    sessions = analytics.time_on_task(store, learners)
    tables = {
        "mastery_history": analytics.mastery_history(store, learners),
        "mastery": analytics.current_mastery(store, learners),
        "knowledge_gaps": analytics.knowledge_gaps(store, learners),
        "answers": analytics.answer_facts(store, learners),
        "time_on_task": analytics.time_on_task_totals(sessions)
        + [{"learner": n, "sessions": 0, "minutes": 0.0}
           for n in learners if n not in {s["learner"] for s in sessions}],
        "sessions": sessions,
        "reviews_due": analytics.reviews_due(store, learners, now),
        "question_accuracy": analytics.question_accuracy(store, learners),
        "common_questions": analytics.common_questions(store, learners),
        "misconceptions": analytics.misconceptions(store, learners, lessons),
        "drop_off": analytics.drop_off(store, learners, lessons),
        "latency": analytics.turn_latency(store, learners),
    }
    tables["time_on_task"].sort(key=lambda r: r["learner"])
    report = Report(title=title, learners=learners, tables=tables)
    report.figures = _figures(report)
    return report


def _figure(width: float = 8, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _figures(report: Report) -> dict[str, Figure]:
    t = report.tables
    figures: dict[str, Figure] = {}
    history: dict[str, list[dict]] = {}
    for row in t["mastery_history"]:
        history.setdefault(row["learner"], []).append(row)
    for number, learner in enumerate(report.learners, start=1):
        fig = _figure()
        ax = fig.add_subplot()
        rows = history.get(learner, [])
        for skill in sorted({r["skill"] for r in rows}):
            points = [r for r in rows if r["skill"] == skill]
            ax.plot([datetime.fromisoformat(r["at"]) for r in points], [r["p_known"] for r in points],
                    marker="o", drawstyle="steps-post", label=skill)
        ax.axhline(MASTERY_THRESHOLD, color="grey", linestyle="--", linewidth=1, label="mastered")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("P(known)")
        ax.set_title(f"Mastery over time: {learner}")
        if rows:
            ax.legend(fontsize="small", loc="lower right")
        else:
            ax.text(0.5, 0.5, "no answers yet", ha="center", transform=ax.transAxes)
        fig.autofmt_xdate()
        figures[f"mastery_{number:02d}_{_slug(learner)}"] = fig

    skills = sorted({r["skill"] for r in t["mastery"]})
    if skills:
        fig = _figure(max(6, 1.2 * len(skills) + 3), max(3, 0.5 * len(report.learners) + 2))
        ax = fig.add_subplot()
        grid = [[float("nan")] * len(skills) for _ in report.learners]
        for r in t["mastery"]:
            grid[report.learners.index(r["learner"])][skills.index(r["skill"])] = r["p_known"]
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(skills)), skills, rotation=30, ha="right", fontsize="small")
        ax.set_yticks(range(len(report.learners)), report.learners)
        fig.colorbar(image, ax=ax, label="P(known)")
        ax.set_title("Current mastery per skill")
        fig.tight_layout()
        figures["class_mastery"] = fig

    fig = _figure()
    ax = fig.add_subplot()
    ax.bar([r["learner"] for r in t["time_on_task"]], [r["minutes"] for r in t["time_on_task"]], color="tab:blue")
    ax.set_ylabel("minutes")
    ax.set_title("Time on task")
    figures["time_on_task"] = fig

    if t["question_accuracy"]:
        fig = _figure()
        ax = fig.add_subplot()
        labels = [f"{r['lesson']}/{r['question']}" for r in t["question_accuracy"]]
        ax.barh(labels, [r["accuracy"] for r in t["question_accuracy"]], color="tab:green")
        ax.set_xlim(0, 1)
        ax.set_xlabel("share answered correctly")
        ax.set_title("Answer accuracy per question")
        fig.tight_layout()
        figures["question_accuracy"] = fig

    stages: dict[str, list[float]] = {}
    for r in t["latency"]:
        stages.setdefault(r["stage"], []).append(r["ms"])
    if stages:
        fig = _figure()
        ax = fig.add_subplot()
        ax.boxplot(list(stages.values()), tick_labels=list(stages))
        ax.set_ylabel("ms after the learner stopped speaking")
        ax.set_title("Tutor response latency per turn")
        figures["latency"] = fig
    return figures


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40] or "learner"


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_report(report: Report, out_dir: Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown report formats: {', '.join(unknown)} (choose from {', '.join(FORMATS)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    if "csv" in formats:
        for name, rows in report.tables.items():
            path = out_dir / f"{name}.csv"
            with path.open("w", newline="", encoding="utf-8") as handle:
                columns = list(rows[0]) if rows else ["(no rows)"]
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
            files.append(path)
    pngs = {name: _png(fig) for name, fig in report.figures.items()} if {"html", "pdf"} & set(formats) else {}
    for name, data in pngs.items():
        path = out_dir / f"{name}.png"
        path.write_bytes(data)
        files.append(path)
    if "html" in formats:
        path = out_dir / "report.html"
        path.write_text(_html(report, pngs), encoding="utf-8")
        files.append(path)
    if "pdf" in formats:
        path = out_dir / "report.pdf"
        _pdf(report, path)
        files.append(path)
    report.files = files
    return files


_HTML_TABLES = ("time_on_task", "mastery", "knowledge_gaps", "answers", "reviews_due", "question_accuracy",
                "common_questions", "misconceptions", "drop_off")


def _html_table(rows: list[dict]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(report: Report, pngs: dict[str, bytes]) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(report.title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
        f"<p>Learners: {html.escape(', '.join(report.learners) or 'none')}</p>",
    ]
    for name in _HTML_TABLES:
        parts.append(f"<h2>{name.replace('_', ' ').capitalize()}</h2>{_html_table(report.tables[name])}")
    latency = report.tables["latency"]
    if latency:
        by_stage: dict[str, list[float]] = {}
        for r in latency:
            by_stage.setdefault(r["stage"], []).append(r["ms"])
        summary = [{"stage": s, "turns": len(v), "median_ms": round(sorted(v)[len(v) // 2], 1),
                    "max_ms": round(max(v), 1)} for s, v in sorted(by_stage.items())]
        parts.append(f"<h2>Tutor latency</h2>{_html_table(summary)}")
    parts.append("<h2>Plots</h2>")
    for name, data in pngs.items():
        encoded = base64.b64encode(data).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>"
                     f"<figcaption>{html.escape(name)}.png</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _pdf(report: Report, path: Path) -> None:
    with PdfPages(path, metadata={"Title": report.title, "Subject": ", ".join(report.learners)}) as pdf:
        page = _figure(8.27, 11.69)
        page.text(0.06, 0.95, report.title, fontsize=16, weight="bold", va="top")
        lines = ["Learner                      sessions   minutes   mastered/skills   reviews due"]
        mastered: dict[str, list[bool]] = {}
        for r in report.tables["mastery"]:
            mastered.setdefault(r["learner"], []).append(r["mastered"])
        due: dict[str, int] = {}
        for r in report.tables["reviews_due"]:
            due[r["learner"]] = due.get(r["learner"], 0) + 1
        for r in report.tables["time_on_task"]:
            m = mastered.get(r["learner"], [])
            lines.append(f"{r['learner'][:28]:<28} {r['sessions']:>8} {r['minutes']:>9.1f}"
                         f"   {sum(m):>5}/{len(m):<5}        {due.get(r['learner'], 0):>5}")
        gaps = report.tables["knowledge_gaps"][:15]
        if gaps:
            lines += ["", "Knowledge gaps (weakest first):"]
            lines += [f"  {g['learner'][:20]:<20} {g['skill'][:36]:<36} P(known) {g['p_known']:.2f}" for g in gaps]
        page.text(0.06, 0.90, "\n".join(lines), family="monospace", fontsize=8, va="top")
        pdf.savefig(page)
        for fig in report.figures.values():
            pdf.savefig(fig)


def build_report(
    store: Store,
    target: str,
    out_dir: Path,
    formats: tuple[str, ...] = FORMATS,
    *,
    lessons: dict | None = None,
    now: datetime | None = None,
) -> Report:
    report = collect(store, target, lessons=lessons, now=now)
    write_report(report, out_dir, formats)
    return report
