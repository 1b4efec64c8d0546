"""``report.md`` (a table shaped like the paper's) and ``vote_curve.png`` (accuracy against K)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from scotd.artifacts import Evaluation


def accuracy_cell(m: Mapping[str, Any] | None, ci: bool = True) -> str:
    """An accuracy entry as a table cell in percent, ``71.3 [65.0, 77.1]`` (``71.3`` with
    ``ci=False``); ``–`` when there is none."""
    if not m:
        return "–"
    cell = f"{100 * m['accuracy']:.1f}"
    if not ci:
        return cell
    lo, hi = m["ci95"]
    return f"{cell} [{100 * lo:.1f}, {100 * hi:.1f}]"


def results_table(models: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: one row per model — greedy, maj@K for the Ks drawn, any-correct, unparseable."""
    ks = sorted({int(k) for m in models.values() for k in (m.get("sampled") or {}).get("maj_at_k", {})})
    head = ["model", "greedy", *[f"maj@{k}" for k in ks], "any correct", "unparseable (sampled)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in models.items():
        s = m.get("sampled") or {}
        cells = [
            name,
            accuracy_cell(m.get("greedy")),
            *[accuracy_cell(s.get("maj_at_k", {}).get(str(k))) for k in ks],
        ]
        cells += [accuracy_cell(s.get("any_correct")), f"{100 * s['unparseable_rate']:.1f}%" if s else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def vote_curve_png(models: Mapping[str, Mapping[str, Any]], title: str) -> bytes:
    """Accuracy against the number of votes K, with 95% intervals; greedy as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    all_ks: set[int] = set()
    for i, (name, m) in enumerate(models.items()):
        color = f"C{i}"
        curve = (m.get("sampled") or {}).get("maj_at_k", {})
        if curve:
            ks = sorted(int(k) for k in curve)
            all_ks.update(ks)
            acc = [100 * curve[str(k)]["accuracy"] for k in ks]
            lo = [a - 100 * curve[str(k)]["ci95"][0] for a, k in zip(acc, ks, strict=True)]
            hi = [100 * curve[str(k)]["ci95"][1] - a for a, k in zip(acc, ks, strict=True)]
            ax.errorbar(ks, acc, yerr=[lo, hi], marker="o", capsize=3, color=color, label=f"{name} (vote)")
        adaptive = (m.get("adaptive") or {}).get("curve")
        if adaptive:
            xs = [p["mean_votes"] for p in adaptive]
            ax.plot(
                xs,
                [100 * p["accuracy"] for p in adaptive],
                marker="s",
                linestyle=":",
                color=color,
                label=f"{name} (adaptive)",
            )
        if m.get("greedy"):
            ax.axhline(
                100 * m["greedy"]["accuracy"],
                linestyle="--",
                color=color,
                alpha=0.7,
                label=f"{name} (greedy)",
            )
    ax.set_xscale("log")
    if all_ks:
        ax.set_xticks(sorted(all_ks), [str(k) for k in sorted(all_ks)])
        ax.minorticks_off()
    return finish_png(fig, ax, "votes per question (K; adaptive: average spent)", title)


def finish_png(fig: Any, ax: Any, xlabel: str, title: str) -> bytes:
    """Label an accuracy-% plot, render it to PNG bytes and free the figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(ax.get_legend_handles_labels()[0]) > 8:  # many students: the legend beside the plot, not on it
        fig.set_size_inches(fig.get_size_inches()[0] + 3.2, fig.get_size_inches()[1])
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def report_markdown(name: str, metrics: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    s = metrics.get("sampled") or {}
    lines = [
        f"# Evaluation: {name}",
        "",
        f"{summary['task']} / {summary['split']}: {metrics['questions']} questions "
        f"({metrics['labeled_questions']} labeled); engine `{summary['engine']}`; "
        f"{s.get('k_drawn', 0)} votes at T={summary['temperature']}.",
        "",
        "Accuracy (%) with 95% bootstrap intervals over questions:",
        "",
        results_table({name: metrics}),
        "",
    ]
    if s:
        lines += [
            f"- single-sample accuracy {100 * s['single_sample_accuracy']:.1f}%, "
            f"mean vote share of the winner {100 * s['mean_vote_share']:.1f}%",
        ]
    a = metrics.get("adaptive")
    if a:
        full = s["maj_at_k"].get(str(a["max_votes"]))
        lines += [
            f"- adaptive voting (stop at confidence {a['confidence']}, at most {a['max_votes']} votes): "
            f"{accuracy_cell(a)} with {a['mean_votes']:.1f} votes on average ({100 * a['votes_fraction']:.0f}% "
            f"of {a['max_votes']}); maj@{a['max_votes']} {accuracy_cell(full)}",
        ]
    lines += [
        f"- throughput: {summary['questions_per_s']:.2f} questions/s, "
        f"{summary['generated_tokens_per_s']:.0f} generated tokens/s ({summary['generate_s']:.1f} s generating)",
        "",
        f"![vote curve]({Evaluation.VOTE_CURVE})",
        "",
    ]
    return "\n".join(lines)
