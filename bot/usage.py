"""Usage reports for moderators: who spent how much, with which roles and models, as a chart and a CSV.

Figures come from the ledger (units net of refunds, per job by its creation time) and the jobs table
(model = the configured provider name, images = saved results). Manual refunds by moderators have no
job, so they appear as their own "manual refund" model and lower the member's total. Role totals use
the roles each member had when last seen by a policy check, so a member counts for each of their roles.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from bot.config import Settings
from bot.moderation.models import AuditEntry
from bot.moderation.store import ModerationStore
from bot.quota import Clock, Ledger, calendar_bounds
from bot.storage import Store

Period = Literal["day", "week", "month", "30d", "all"]
PERIODS: tuple[Period, ...] = ("day", "week", "month", "30d", "all")
MANUAL_REFUND = "manual refund"
CHART_TOP_MEMBERS = 10
#: matplotlib's font cache and text layout are shared state: draw one chart at a time.
_CHART_LOCK = threading.Lock()

_JOBS_SQL = """
SELECT j.requester_id, j.provider, j.created_at,
  COALESCE((SELECT SUM(CASE x.entry WHEN 'reserve' THEN x.units WHEN 'refund' THEN -x.units ELSE 0 END)
            FROM quota_ledger AS x WHERE x.job_id = j.id), 0),
  (SELECT COUNT(*) FROM job_images AS i WHERE i.job_id = j.id AND i.role = 'result')
FROM jobs AS j WHERE j.guild_id IS ? AND j.created_at >= ? AND j.created_at < ?
"""
_MANUAL_SQL = """
SELECT user_id, created_at, units FROM quota_ledger
WHERE guild_id IS ? AND job_id IS NULL AND entry = 'refund' AND created_at >= ? AND created_at < ?
"""


@dataclass
class UsageRow:
    """Totals for one member, role, model or day. ``key`` is a user/role id, a provider name or a date."""

    key: int | str
    units: int = 0
    images: int = 0
    jobs: int = 0


@dataclass
class UsageReport:
    guild_id: int
    start: float
    end: float
    timezone: str
    members: list[UsageRow] = field(default_factory=list)
    roles: list[UsageRow] = field(default_factory=list)
    models: list[UsageRow] = field(default_factory=list)
    #: date (YYYY-MM-DD, guild time zone) -> model -> units
    days: dict[str, dict[str, int]] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)

    @property
    def total_units(self) -> int:
        return sum(row.units for row in self.members)

    @property
    def total_images(self) -> int:
        return sum(row.images for row in self.members)


def _ranked(rows: Mapping[int | str, UsageRow]) -> list[UsageRow]:
    return sorted(rows.values(), key=lambda r: (-r.units, -r.images, str(r.key)))


class UsageService:
    def __init__(
        self, db: Store, ledger: Ledger, *, model_labels: Mapping[str, str] | None = None, clock: Clock | None = None
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.store = ModerationStore(db)
        self.model_labels = dict(model_labels or {})
        self.clock = clock or ledger.clock

    @staticmethod
    def labels_for(settings: Settings) -> dict[str, str]:
        """provider name -> "name (model)", so reports name the model that was paid for."""
        return {name: f"{name} ({getattr(cfg, 'model', cfg.kind)})" for name, cfg in settings.providers.items()}

    async def period_bounds(self, guild_id: int, period: Period) -> tuple[float, float]:
        """The current day/week/month in the guild's time zone, the last 30 days, or everything."""
        now = self.clock()
        if period == "all":
            return 0.0, now + 1
        if period == "30d":
            return now - 30 * 86400, now + 1
        window = await self.ledger.window_for(guild_id)
        kind = {"day": "daily", "week": "weekly", "month": "monthly"}[period]
        return calendar_bounds(kind, window.timezone, now)

    async def report(self, guild_id: int, period: Period = "month", *, audit_entries: int = 20) -> UsageReport:
        start, end = await self.period_bounds(guild_id, period)
        return await self.report_between(guild_id, start, end, audit_entries=audit_entries)

    async def report_between(self, guild_id: int, start: float, end: float, *, audit_entries: int = 20) -> UsageReport:
        zone = (await self.ledger.window_for(guild_id)).timezone
        tz = ZoneInfo(zone)
        members: dict[int | str, UsageRow] = {}
        models: dict[int | str, UsageRow] = {}
        days: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

        def add(user_id: int, model: str, at: float, units: int, images: int, jobs: int) -> None:
            for rows, key in ((members, user_id), (models, model)):
                row = rows.setdefault(key, UsageRow(key))
                row.units += units
                row.images += images
                row.jobs += jobs
            days[datetime.fromtimestamp(at, tz).date().isoformat()][model] += units

        for user_id, provider, at, units, images in await self.db.fetchall(_JOBS_SQL, (guild_id, start, end)):
            add(int(user_id), self.model_labels.get(provider, provider), float(at), int(units), int(images), 1)
        for user_id, at, units in await self.db.fetchall(_MANUAL_SQL, (guild_id, start, end)):
            add(int(user_id), MANUAL_REFUND, float(at), -int(units), 0, 0)

        roles: dict[int | str, UsageRow] = {}
        for member in members.values():
            for role_id in await self._roles_of(guild_id, int(member.key)):
                row = roles.setdefault(role_id, UsageRow(role_id))
                row.units += member.units
                row.images += member.images
                row.jobs += member.jobs
        audit = await self.store.audit(guild_id, since=start, until=end, limit=audit_entries)
        return UsageReport(
            guild_id=guild_id,
            start=start,
            end=end,
            timezone=zone,
            members=_ranked(members),
            roles=_ranked(roles),
            models=_ranked(models),
            days={day: dict(per_model) for day, per_model in sorted(days.items())},
            audit=audit,
        )

    async def _roles_of(self, guild_id: int, user_id: int) -> tuple[int, ...]:
        return await self.store.member_roles(guild_id, user_id) or ()

    async def chart_png(self, report: UsageReport, names: Mapping[int, str] | None = None) -> bytes:
        """The chart, drawn in a worker thread so the event loop keeps serving Discord."""
        return await asyncio.to_thread(render_chart, report, dict(names or {}))

    @staticmethod
    def csv_bytes(report: UsageReport, names: Mapping[int, str] | None = None) -> bytes:
        return render_csv(report, dict(names or {}))

    @staticmethod
    def audit_csv_bytes(report: UsageReport) -> bytes:
        return render_audit_csv(report.audit, report.timezone)

    async def recent_audit(self, guild_id: int, limit: int = 20) -> list[AuditEntry]:
        """The latest moderator actions, newest first."""
        return await self.store.audit(guild_id, limit=limit)


def _safe_cell(text: str) -> str:
    """Names are chosen by members: never let one start a spreadsheet formula."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_csv(report: UsageReport, names: Mapping[int, str]) -> bytes:
    """One table: section (member/role/model/day), id, name, units, images, jobs."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "id", "name", "units", "images", "jobs"])
    for section, rows in (("member", report.members), ("role", report.roles), ("model", report.models)):
        for row in rows:
            name = names.get(row.key, "") if isinstance(row.key, int) else row.key
            writer.writerow([section, row.key, _safe_cell(name), row.units, row.images, row.jobs])
    for day, per_model in report.days.items():
        for model, units in sorted(per_model.items()):
            writer.writerow(["day", day, _safe_cell(model), units, "", ""])
    return out.getvalue().encode("utf-8")


def render_audit_csv(entries: list[AuditEntry], timezone: str) -> bytes:
    """The audit log as a table: when (guild time zone), actor, action, target, reason, details (JSON)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["when", "actor_id", "action", "target", "reason", "details"])
    zone = ZoneInfo(timezone)
    for entry in entries:
        when = datetime.fromtimestamp(entry.created_at, zone).isoformat(timespec="seconds")
        details = json.dumps(entry.details, sort_keys=True)
        writer.writerow(
            [when, entry.actor_id, entry.action, entry.target or "", _safe_cell(entry.reason or ""), details]
        )
    return out.getvalue().encode("utf-8")


def _label(text: str, width: int = 24) -> str:
    """Short, and with '$' escaped so matplotlib never reads a member's name as math."""
    short = text if len(text) <= width else text[: width - 1] + "…"
    return short.replace("$", r"\$")


def render_chart(report: UsageReport, names: Mapping[int, str]) -> bytes:
    """Units per day and model (stacked bars) beside the top members (horizontal bars), as PNG bytes."""
    with _CHART_LOCK:
        return _draw_chart(report, names)


def _draw_chart(report: UsageReport, names: Mapping[int, str]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported here: slow, and only moderators need it
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    by_day, by_member = figure.subplots(1, 2, width_ratios=[3, 2])
    zone = ZoneInfo(report.timezone)
    first = datetime.fromtimestamp(report.start, zone).date() if report.start else None
    title = f"since {first.isoformat()}" if first else "all time"
    figure.suptitle(f"Image credits used ({title}, {report.timezone}): {report.total_units}")

    days = list(report.days)
    models = sorted({model for per_model in report.days.values() for model in per_model})
    bottoms = [0] * len(days)
    for model in models:
        heights = [report.days[day].get(model, 0) for day in days]
        if model == MANUAL_REFUND:  # below the axis, never stacked onto what was spent
            by_day.bar(range(len(days)), heights, color="tab:gray", hatch="//", label=MANUAL_REFUND)
            continue
        by_day.bar(range(len(days)), heights, bottom=bottoms, label=_label(model, 32))
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    by_day.axhline(0, color="black", linewidth=0.8)
    by_day.set_title("Per day and model")
    by_day.set_ylabel("credits")
    if days:
        step = max(1, len(days) // 10)
        by_day.set_xticks(range(0, len(days), step), [d[5:] for d in days[::step]])
        by_day.legend(fontsize="small")
    else:
        by_day.text(0.5, 0.5, "No usage in this period", ha="center", va="center", transform=by_day.transAxes)

    top = report.members[:CHART_TOP_MEMBERS][::-1]
    labels = [_label(names.get(int(row.key), str(row.key))) for row in top]
    by_member.barh(range(len(top)), [row.units for row in top], color="tab:purple")
    by_member.set_yticks(range(len(top)), labels)
    by_member.set_title(f"Top {len(top)} member{'s' if len(top) != 1 else ''}")
    by_member.set_xlabel("credits")

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
