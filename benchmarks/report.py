"""The results: one Markdown table (printed and written) and one PNG chart."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from .common import Row


def write_all(
    rows: Sequence[Row], machine: Mapping[str, str], meta: Mapping[str, str], out: Path
) -> str:
    """results.md, results.png and results.json (the rows, to re-render without re-running)."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, machine, meta, misses_text(rows))
    (out / "results.md").write_text(text)
    chart(rows, out / "results.png")
    data = {"machine": dict(machine), "meta": dict(meta), "rows": [asdict(r) for r in rows]}
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    """python -m benchmarks.report [results folder]: render md and png again from json."""
    out = Path(
        (argv if argv is not None else sys.argv[1:] or [""])[0] or Path(__file__).parent / "results"
    )
    data = json.loads((out / "results.json").read_text())
    rows = [Row(**r) for r in data["rows"]]
    write_all(rows, data["machine"], data["meta"], out)
    sys.stdout.write(table(rows))
    return 0


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        if value < 0.01:
            return f"{value * 1000:.1f} ms"
        if value < 1:
            return f"{value * 1000:.0f} ms"
        return f"{value:.2f} s"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def fmt_req(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def verdict(row: Row) -> str:
    if row.met is None:
        return ""
    return "yes" if row.met else "**no**"


LEGEND = """\
How to read it: *ours* and *baseline* are medians of *runs* samples (seconds unless
a unit is given); *ours / baseline* divides them. *Requests*: for a local-folder
remote, rclone calls (the baseline: rclone processes; ours: operations sent to the
agent's one rclone daemon, or processes on the workstation side); for S3, the
HTTP requests moto answered, by both rclone and boto3. Notes give each side's
range where it matters: on a shared 2-core machine a few percent is noise.
"""


def table(rows: Sequence[Row]) -> str:
    head = (
        "| benchmark | case | ours | baseline | ours / baseline | requests (ours / baseline) "
        "| goal | met | runs | note |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    lines = []
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        if r.ours_req is None and r.base_req is None:
            req = "-"
        else:
            req = f"{fmt_req(r.ours_req)} / {fmt_req(r.base_req)} {r.req_unit}".strip()
        lines.append(
            f"| {r.bench} | {r.case} | {fmt(r.ours, r.unit)} | {fmt(r.base, r.unit)} | {ratio} "
            f"| {req} | {r.goal} | {verdict(r)} | {r.runs} | {r.note} |"
        )
    return head + "\n".join(lines) + "\n"


def markdown(
    rows: Sequence[Row], machine: Mapping[str, str], meta: Mapping[str, str], misses: str
) -> str:
    out = ["# pulumi-iterative benchmarks\n"]
    out.append(
        "Ours against the Terraform provider's method (the baseline, `benchmarks/baseline.sh`), "
        "measured in one run on one machine. Values are medians over `runs` repetitions; "
        "ratios are ours / baseline of those medians (below 1 is better for times).\n"
    )
    out.append("## Machine\n")
    out.extend(f"- {k}: {v}" for k, v in {**machine, **meta}.items())
    out.append("")
    out.append("## Results\n")
    out.append(table(rows))
    out.append(LEGEND)
    out.append("## Goals missed\n")
    out.append(misses or "None.\n")
    return "\n".join(out)


def misses_text(rows: Sequence[Row]) -> str:
    parts = []
    for r in rows:
        if r.met is False:
            by = f" ({r.ratio:.2f}x against {r.goal})" if r.ratio is not None else ""
            parts.append(f"- {r.bench}, {r.case}{by}: {r.why or 'see the note.'}")
    return "\n".join(parts) + ("\n" if parts else "")


def chart(rows: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = [r for r in rows if r.ratio is not None]
    alone = [r for r in rows if r.ratio is None and r.ours is not None and r.unit == "s"]
    heights = [max(2.0, 0.38 * len(ratios) + 1), max(1.5, 0.38 * len(alone) + 1)]
    fig, axes = plt.subplots(
        2 if alone else 1,
        1,
        figsize=(10, sum(heights) if alone else heights[0]),
        gridspec_kw={"height_ratios": heights} if alone else None,
        squeeze=False,
    )
    ax = axes[0][0]
    labels = [f"{r.bench.split('.')[0]}. {r.case}" for r in ratios]
    values = [max(r.ratio or 0, 1e-3) for r in ratios]
    colors = ["#2a9d8f" if r.met else ("#e76f51" if r.met is False else "#8d99ae") for r in ratios]
    y = range(len(ratios))
    ax.barh(list(y), values, color=colors)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ours / baseline (log scale; < 1 is better; green: goal met, red: missed)")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    ax.set_title("pulumi-iterative vs the Terraform provider's method", fontsize=10)
    if alone:
        ax2 = axes[1][0]
        labels2 = [f"{r.bench.split('.')[0]}. {r.case}" for r in alone]
        vals2 = [r.ours or 0 for r in alone]
        colors2 = [
            "#2a9d8f" if r.met else ("#e76f51" if r.met is False else "#8d99ae") for r in alone
        ]
        ax2.barh(list(range(len(alone))), vals2, color=colors2)
        ax2.set_yticks(list(range(len(alone))))
        ax2.set_yticklabels(labels2, fontsize=7)
        ax2.invert_yaxis()
        ax2.set_xlabel("seconds (ours only: no baseline)")
        for i, v in enumerate(vals2):
            ax2.text(v, i, f" {v:.3g} s", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
