"""results.json, results.md (one table per workload, with ratios against the anchors of the
same run) and the PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchsuite.systems import ANCHORS, LABELS

Row = tuple[str, str, dict[str, str], float | None]
"""(system, variant, figures shown, primary figure divided by the anchors')."""


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _latency_rows(w: dict[str, Any]) -> list[Row]:
    return [
        (name, "", {k: _fmt(s[k]) for k in ("p50", "p99", "p99.9")}, s["p50"])
        for name, s in w["systems"].items()
    ]


def _throughput_rows(w: dict[str, Any]) -> list[Row]:
    rows = []
    for mode in ("disjoint", "overlap10"):
        for name, s in w["systems"].items():
            for writers, f in s.get(mode, {}).items():
                rows.append(
                    (
                        name,
                        f"{mode}, {writers} writer(s)",
                        {
                            "commits/s": _fmt(f["commits_per_s"]),
                            "conflicts/commit": f"{f['conflict_rate']:.3f}",
                        },
                        f["commits_per_s"],
                    )
                )
    return rows


def _bank_rows(w: dict[str, Any]) -> list[Row]:
    return [
        (
            name,
            "",
            {
                "commits/s": _fmt(s["commits_per_s"]),
                "workers": str(s["workers"]),
                "conflicts/commit": f"{s['conflict_rate']:.3f}",
                "total ok": "yes" if s["total_ok"] else f"NO {s['totals']}",
            },
            s["commits_per_s"],
        )
        for name, s in w["systems"].items()
    ]


def _shootout_rows(w: dict[str, Any]) -> list[Row]:
    rows = []
    for op in ("add", "update", "warm", "cold", "hot"):
        for name, s in w["systems"].items():
            rows.append((name, op, {"µs/object": _fmt(s[op])}, s[op]))
    return rows


def _failover_rows(w: dict[str, Any]) -> list[Row]:
    return [
        (
            name,
            f"{len(s['trials'])} kill(s)",
            {"median": f"{s['median_s']:.2f}", "max": f"{s['max_s']:.2f}"},
            None,
        )
        for name, s in w["systems"].items()
    ]


ROWS = {
    "a_commit_latency": _latency_rows,
    "b_throughput": _throughput_rows,
    "c_bank": _bank_rows,
    "d_shootout": _shootout_rows,
    "e_uncached_load": _latency_rows,
    "f_read_only_txn": _latency_rows,
    "g_wsgi_request": _latency_rows,
    "h_failover": _failover_rows,
    "i_lease_holder_death": _failover_rows,
    "j_lock_holder_death": _failover_rows,
}


def table(key: str, w: dict[str, Any]) -> str:
    rows = ROWS[key](w)
    anchors = [a for a in ANCHORS if any(r[0] == a for r in rows)]
    primary = {(r[0], r[1]): r[3] for r in rows}
    figure_names = list(rows[0][2]) if rows else []
    lead = next(iter(figure_names), "")
    cases = any(r[1] for r in rows)
    head = ["system", *(["case"] if cases else []), *figure_names]
    head += [f"{lead} ÷ {a}" for a in anchors]
    lines = [
        f"### {w['title']}",
        "",
        f"Unit: {w['unit']} ({w['better']} is better). {w.get('note', '')}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for system, variant, figures, value in rows:
        ratios = []
        for anchor in anchors:
            base = primary.get((anchor, variant))
            if value is None or not base or anchor == system:
                ratios.append("")
            else:
                ratios.append(f"{value / base:.2f}×")  # noqa: RUF001
        cells = [system, *([variant] if cases else []), *figures.values(), *ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


HEADLINE_CASES = {
    "b_throughput": {"disjoint, 8 writer(s)", "overlap10, 8 writer(s)"},
    "d_shootout": {"add", "update", "cold"},
}


def headline(results: dict[str, Any]) -> str:
    """The paxos rows of every workload, their primary figure beside each anchor's for the
    same case, with the ratio."""
    head = ["workload", "system", "case", "figure", *(f"{a} (paxos ÷ it)" for a in ANCHORS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, w in results["workloads"].items():
        rows = ROWS[key](w)
        primary = {(r[0], r[1]): r[3] for r in rows}
        lead = next(iter(rows[0][2])) if rows else ""
        for system, variant, figures, value in rows:
            if system in ANCHORS or (key in HEADLINE_CASES and variant not in HEADLINE_CASES[key]):
                continue
            unit = w["unit"]
            shown = f"{figures[lead]} {unit}" if lead == unit else f"{lead} {figures[lead]} {unit}"
            cells = [key.split("_")[0], system, variant, shown]
            for anchor in ANCHORS:
                base = primary.get((anchor, variant))
                if value is None or base is None:
                    cells.append("")
                else:
                    cells.append(f"{_fmt(base)} ({value / base:.2f}×)")  # noqa: RUF001
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    parts = [
        "## relstorage_paxos benchmark suite",
        "",
        f"Run {meta['started']} on {meta['machine']}, {meta['mode']} sizes, "
        f"{meta['duration_s']:.0f} s; {meta['rounds']} interleaved round(s), medians over "
        "rounds (p99.9 of a round of a few hundred samples is close to its maximum).",
        "Ratios divide each figure by the anchor's for the same case, measured in the same run.",
        "",
        "Systems: "
        + "; ".join(f"`{name}` {label}" for name, label in LABELS.items())
        + ". All history-free.",
        "",
        "### Headline: paxos against the anchors",
        "",
        headline(results),
    ]
    for key, w in results["workloads"].items():
        parts.append(table(key, w))
    if meta.get("left_out"):
        parts.append("Left out: " + meta["left_out"] + "\n")
    return "\n".join(parts)


COLORS = {
    "paxos-leader": "tab:blue",
    "paxos-follower": "tab:orange",
    "paxos-3node": "tab:blue",
    "embedded": "tab:green",
    "rs-sqlite": "tab:red",
    "filestorage": "tab:purple",
    "zeo": "tab:brown",
    "postgres": "tab:gray",
}


def _color(name: str) -> str | None:
    return COLORS.get(name.split(" ")[0])


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    cdfs = {
        "a_commit_latency": "1-object commit latency (µs)",
        "e_uncached_load": "uncached load latency under writes (µs)",
        "f_read_only_txn": "read-only transaction latency (µs)",
    }
    for key, xlabel in cdfs.items():
        w = results["workloads"].get(key)
        if not w:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=80)
        for name, s in w["systems"].items():
            values = sorted(s["samples_us"])
            ys = [(i + 1) / len(values) for i in range(len(values))]
            style = "--" if "(session)" in name else "-"
            ax.step(values, ys, style, where="post", label=name, linewidth=1.2, color=_color(name))
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of samples ≤ x")
        ax.set_title(w["title"], fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = out / f"{key}_cdf.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    w = results["workloads"].get("b_throughput")
    if w:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), dpi=80, sharey=True)
        for ax, mode in zip(axes, ("disjoint", "overlap10"), strict=True):
            for name, s in w["systems"].items():
                points = sorted((int(k), v["commits_per_s"]) for k, v in s[mode].items())
                ax.plot(*zip(*points, strict=True), marker="o", label=name, color=_color(name))
            ax.set_yscale("log")
            ax.set_xticks([int(k) for k in next(iter(w["systems"].values()))[mode]])
            ax.set_xlabel("writers")
            ax.set_title(mode, fontsize=10)
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel("commits/s (log)")
        axes[1].legend(fontsize=7)
        fig.suptitle(w["title"], fontsize=10)
        fig.tight_layout()
        path = out / "b_throughput.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
