"""`--compare`: each ratio, req/s and p99 of a results file beside an earlier one's.

Configurations are matched by backend and worker count. Ratios are computed from the runs
(`report.ratio`), so a file written before a ratio existed shows it when its runs are there,
and "–" otherwise. The change of a ratio is its difference (and that in %); of a rate, a
latency or a memory figure, the change in %.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench import report

Kind = Literal["ratio", "rate", "latency", "memory"]

# The runs compared: (results key, label). Rates and p99 of each.
RUNS = (
    ("challenge", "challenge"),
    ("floor", "challenge floor"),
    ("login", "login"),
    ("refresh", "refresh"),
    ("refresh_floor", "refresh floor"),
    ("me", "GET /users/me"),
    ("me_floor", "GET /users/me floor"),
    ("introspect", "introspect"),
    ("introspect_floor", "introspect floor"),
)


@dataclass(frozen=True)
class Figure:
    label: str
    kind: Kind
    value: float | None


def load(path: Path) -> dict[str, Any]:
    """A results file (bench/results/*.json); ValueError when it is not one."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable results file ({exc})") from exc
    if not isinstance(results, dict) or not isinstance(results.get("configs"), list):
        raise ValueError(f"{path}: not a results file of python -m bench (no configs)")
    return results


def figures(c: dict[str, Any]) -> list[Figure]:
    """What is compared for one configuration, in the table's order."""
    out = [Figure(r.label, "ratio", report.ratio(c, r)) for r in report.RATIOS]
    for key, label in RUNS:
        run = c.get(key) or {}
        out.append(Figure(f"{label} req/s", "rate", run.get("rps")))
        out.append(Figure(f"{label} p99 ms", "latency", (run.get("latency_ms") or {}).get("p99")))
    p99 = ((c.get("healthz_under_login") or {}).get("latency_ms") or {}).get("p99")
    out.append(Figure("/healthz under login p99 ms", "latency", p99))
    peak = max(c.get("peak_rss_mb") or [0.0]) or None
    out.append(Figure("peak RSS per worker MB", "memory", peak))
    return out


def change(kind: Kind, before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return "–"
    relative = f"{(after - before) / before:+.0%}" if before else "–"
    if kind == "ratio":
        return f"{after - before:+.3f} ({relative})"
    return relative


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"


def _configs(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {report.config_name(c): c for c in results.get("configs", [])}


def _describe(name: str, results: dict[str, Any]) -> str:
    env = results.get("environment", {})
    opts = results.get("options", {})
    commit = str(env.get("git_commit") or "?")[:12]
    kind = "quick run" if opts.get("quick") else "full run"
    return (
        f"{name}: {env.get('date') or results.get('started_at', '?')}, git {commit}, "
        f"{opts.get('users', 0):,} users, {kind}"
    )


def _mismatch(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Why the two runs may not compare one to one."""
    notes = []
    for option in ("users", "quick", "floor_seconds", "concurrency"):
        b, a = before.get("options", {}).get(option), after.get("options", {}).get(option)
        if b != a:
            notes.append(f"{option} {b} → {a}")
    return notes


def markdown(
    before: dict[str, Any], after: dict[str, Any], before_name: str, after_name: str
) -> str:
    lines = [
        f"# Compared with {before_name}",
        "",
        f"- before: {_describe(before_name, before)}",
        f"- after: {_describe(after_name, after)}",
    ]
    if notes := _mismatch(before, after):
        lines.append(f"- **the runs differ**: {', '.join(notes)}")
    lines += [
        "",
        "| configuration | figure | before | after | change |",
        "|---|---|---:|---:|---:|",
    ]
    earlier, later = _configs(before), _configs(after)
    for name in (n for n in later if n in earlier):
        for b, a in zip(figures(earlier[name]), figures(later[name]), strict=True):
            if b.value is None and a.value is None:
                continue
            cells = [name, a.label, _fmt(b.value), _fmt(a.value), change(a.kind, b.value, a.value)]
            lines.append("| " + " | ".join(cells) + " |")
    for side, mine, other in (("before", earlier, later), ("after", later, earlier)):
        if alone := [n for n in mine if n not in other]:
            lines += ["", f"Only {side}: {'; '.join(alone)}."]
    return "\n".join(lines) + "\n"


def compare_files(before: Path, after: Path) -> str:
    return markdown(load(before), load(after), str(before), str(after))
