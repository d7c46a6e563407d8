"""``REPORT.md`` and ``results.json``: the verdicts of one scale, with the other scale side by side.

The report holds no timestamp of its own: everything in it comes from the evidence records, so
the same records always give the same bytes.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from theorylab._io import atomic_write_json, atomic_write_text
from theorylab.claims.checks import VERDICTS
from theorylab.provenance import __version__

HOW_TO_READ = (
    "Each claim is an experiment whose measurement is compared with the paper's prediction through typed "
    "checks: *precondition* (the regime the prediction needs was reached; if not, the claim is inconclusive), "
    "*tolerance* (equality within a tolerance from an independent source), *bound* (a predicted inequality) "
    "and *effect* (a predicted effect, significant with power: not significant is inconclusive unless the "
    "confidence interval excludes the smallest predicted effect, which refutes it). Training claims run "
    "several seeds; each section lists the per-seed outcomes and the rule that combines them. Beside every "
    "claim runs its *negative control*, a null version of the experiment that must not be confirmed; a "
    "confirmed control makes the claim inconclusive.")


def read_results(folder: Path) -> dict[str, dict[str, Any]]:
    """The evidence records of ``folder/results.json`` by claim id (empty if there is none)."""
    path = Path(folder) / "results.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return {e["claim_id"]: e for e in data["evidence"]}
    except (ValueError, KeyError, TypeError):
        return {}


def write_report(records: list[dict[str, Any]], out_dir: str | Path, *, scale: str,
                 other: Mapping[str, dict[str, Any]], claim_hashes: Mapping[str, str]) -> Path:
    """Write ``results.json`` (every record) and ``REPORT.md``; ``other`` holds the other scale's records."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "results.json",
                      {"meta": {"theorylab_version": __version__, "scale": scale}, "evidence": records})
    other_scale = "full" if scale == "quick" else "quick"
    counts = {v: sum(r["verdict"] == v for r in records) for v in VERDICTS}
    lines = [
        "# theorylab verification report", "",
        f"Scale: **{scale}**. " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".",
        f"Regenerate with `theorylab verify --scale {scale}` (see README.md); every number is in `results.json`.", "",
        HOW_TO_READ, "",
        f"| claim | paper | predicted | measured | {scale} | {other_scale} | negative control | figure |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        fig = f"[png]({Path(r['figure']).name}.png)" if r.get("figure") and r["verdict"] != "error" else "-"
        lines.append(f"| `{r['claim_id']}` {_md(r['title'])} | {_md(r['citation'])} | {_md(r['predicted'])} | "
                     f"{_md(r['measured'])} | **{r['verdict']}** | {_other_cell(r, other.get(r['claim_id']), claim_hashes)} | "
                     f"{_md((r.get('control') or {}).get('verdict', '-'))} | {fig} |")
    for r in records:
        lines += _section(r, scale, other_scale, other.get(r["claim_id"]), claim_hashes)
    return atomic_write_text(out_dir / "REPORT.md", "\n".join(lines) + "\n")


def _provenance(r: dict[str, Any]) -> str:
    meta = r.get("meta", {})
    commit = meta.get("git_commit")
    commit = commit[:10] + ("+dirty" if commit.endswith("+dirty") else "") if commit else "unknown"
    return (f"device {meta.get('device', '?')}, commit {commit}, {str(meta.get('created_utc', '?'))[:10]}, "
            f"wall time {meta.get('wall_time_s', '?')} s")


def _outdated(r: dict[str, Any], claim_hashes: Mapping[str, str]) -> bool:
    return r.get("meta", {}).get("claim_hash") != claim_hashes.get(r["claim_id"])


def _other_cell(r: dict[str, Any], o: dict[str, Any] | None, claim_hashes: Mapping[str, str]) -> str:
    if o is None:
        return "not run"
    if o["verdict"] == "error":
        return "error"
    flags = (["**disagrees**"] if o["verdict"] != r["verdict"] else []) + (
        ["outdated"] if _outdated(o, claim_hashes) else [])
    return o["verdict"] + (f" ({', '.join(flags)})" if flags else "")


def _section(r: dict[str, Any], scale: str, other_scale: str, o: dict[str, Any] | None,
             claim_hashes: Mapping[str, str]) -> list[str]:
    lines = ["", f"## `{r['claim_id']}`: {r['title']}", "", f"*{r['citation']}*", "", f"> {r['statement']}", "",
             f"**{scale}: {r['verdict']}**: {_md(r.get('reason', ''))} ({_provenance(r)})."
             + (" **Outdated**: made by an older version of this claim; its checks are not those of the current "
                "claim." if _outdated(r, claim_hashes) else "")]
    if r.get("latest_error"):
        lines.append(f"The latest {scale} run ({r['latest_error']}) raised an error "
                     f"(`evidence/{r['claim_id']}.error.json`); the verdict above is from the last run that finished.")
    if o is None:
        lines.append(f"\n{other_scale}: not run.")
    else:
        notes = []
        if o["verdict"] != r["verdict"]:
            notes.append(f"**disagrees with {scale}**")
        if _outdated(o, claim_hashes):
            notes.append("outdated: the claim's code changed since this run")
        lines.append(f"\n{other_scale}: **{o['verdict']}**: {_md(o.get('reason', ''))} ({_provenance(o)})"
                     + (f"; {'; '.join(notes)}" if notes else "") + ".")
    lines += ["", f"Tolerances: {r['tolerance']}"]
    if r["checks"]:
        lines += ["", "| check | kind | measured | predicted | passed | source and detail |", "|---|---|---|---|---|---|"]
        for c in r["checks"]:
            lines.append(f"| {_md(c['name'])} | {c.get('kind', '-')} | {_number(c['measured'])} | {_md(c['predicted'])} | "
                         f"{_passed(c['passed'])} | {_md('; '.join(x for x in (c.get('source', ''), c['detail']) if x))} |")
    if r.get("per_seed"):
        lines += ["", "Per seed:" + (f" {r['rule']}" if r.get("rule") else ""), ""] + _table(r["per_seed"])
    control = r.get("control") or {}
    if control:
        lines += ["", f"Negative control ({_md(control.get('description', ''))}): **{control.get('verdict')}**: "
                      f"{_md(control.get('reason', ''))}" + (f"; measured {_md(control['measured'])}"
                                                             if control.get("measured") else "") + "."]
    if r.get("figure") and r["verdict"] != "error":
        lines += ["", f"![{r['claim_id']}]({Path(r['figure']).name}.png)"]
    if r.get("notes"):
        lines += ["", r["notes"] if r["verdict"] != "error" else f"```\n{r['notes']}\n```"]
    return lines


def _table(columns: Mapping[str, list[Any]]) -> list[str]:
    names = list(columns)
    rows = max((len(v) for v in columns.values()), default=0)
    out = ["| " + " | ".join(_md(n) for n in names) + " |", "|" + "---|" * len(names)]
    for i in range(rows):
        out.append("| " + " | ".join(_cell(columns[n][i] if i < len(columns[n]) else "") for n in names) + " |")
    return out


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _passed(value)
    if isinstance(value, float) or isinstance(value, dict) and "__float__" in value:
        return _number(value)
    return _md(str(value))


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict) and "__float__" in value:
        return value["__float__"]
    return f"{value:.4g}"


def _passed(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "undecided"}[value]


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
