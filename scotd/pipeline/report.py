"""The pipeline's outputs: ``results.json``, ``report.md``, ``vote_curve.png``, ``n_ablation.png``.

Pure functions of what the stages returned (no Ray, no models), so a report can be rebuilt from
``results.json`` alone: ``rebuild_report(out)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from scotd import storage
from scotd.artifacts import PipelineRun
from scotd.eval.metrics import paired_difference
from scotd.eval.report import accuracy_cell, finish_png, results_table, vote_curve_png
from scotd.paper import paper_reference

if TYPE_CHECKING:
    from scotd.artifacts import SampleSummary
    from scotd.pipeline.config import Outcome, PipelineConfig, Student

# The demo's targets (issue #9): SCoTD (N) over label-only and over the smallest N, in points.
TARGETS = {"label_only": 15.0, "n_ablation": 5.0}
ALPHA = 0.05  # a comparison is significant when its paired p-value is below this

_TEACHER_KEYS = (
    "teacher_model",
    "questions",
    "samples",
    "teacher_accuracy",
    "parse_rate",
    "parse_errors",
    "requests_planned",
    "requests_this_run",
    "tokens",
    "cost_usd",
    "achieved_rpm",
    "wall_s",
)
_TRAIN_KEYS = (
    "run_name",
    "final_step",
    "train_loss_first",
    "train_loss_last",
    "val_loss_first",
    "val_loss_last",
    "steps_per_s_median",
    "tokens_per_s_median",
    "trained_steps_this_run",
    "wall_s",
    "run_dir",
    "export_dir",
)


def _p(p: float) -> str:
    """A p-value as a reader wants it: ``p=0.031``, or ``p<0.0001`` (an exact test can round to 0)."""
    return "p<0.0001" if p < 1e-4 else f"p={p:.3g}"


def headline_metric(metrics: Mapping[str, Any], setting: str) -> tuple[str, Mapping[str, Any] | None]:
    """Supervised: greedy (the paper's metric there); few-shot: self-consistency at the largest K."""
    curve = (metrics.get("sampled") or {}).get("maj_at_k") or {}
    if setting == "few-shot" and curve:
        k = max(curve, key=int)
        return f"maj@{k}", curve[k]
    return "greedy", metrics.get("greedy")


def compare(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Difference in points of two accuracies and whether their 95% intervals are apart."""
    if not a or not b:
        return None
    return {
        "diff_points": round(100 * (a["accuracy"] - b["accuracy"]), 1),
        "intervals_separated": a["ci95"][0] > b["ci95"][1] or b["ci95"][0] > a["ci95"][1],
    }


def relative_to_run(value: Any, run_uri: str) -> Any:
    """``value`` with every path inside the run's directory written relative to it ("students/…"),
    so that ``results.json`` still holds when the directory is copied or moved."""
    if isinstance(value, str):
        return "." if value == run_uri else value.removeprefix(run_uri.rstrip("/") + "/")
    if isinstance(value, Mapping):
        return {k: relative_to_run(v, run_uri) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_to_run(v, run_uri) for v in value]
    return value


def assemble(
    cfg: PipelineConfig,
    teacher: SampleSummary,
    outcomes: Sequence[Outcome],
    stage_s: Mapping[str, float],
    total_s: float,
    previous_run: Mapping[str, Any] | None = None,
    correct: Mapping[str, Mapping[str, bool]] | None = None,
) -> dict[str, Any]:
    """What ``results.json`` holds. ``previous_run`` (the last results' ``run``) supplies the time
    of stages this run reused, so the report's times are those of the work, not of the check.
    ``correct``: per student, whether each test question is right on the headline metric (from
    the predictions), for the paired comparisons; without it only the intervals are compared."""
    summary = teacher.to_dict()
    students: dict[str, Any] = {}
    evaluated: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        s, run = o.student, o.run
        assert o.training_set.summary is not None and run.summary is not None
        trained = {**run.summary.to_dict(), "run_dir": run.uri, "export_dir": run.export_uri}
        evaluated[s.key] = o.evaluation.as_result()
        students[s.key] = {
            "label": s.label,
            "n": s.n,
            "corpus": o.training_set.summary.to_dict(),
            "train": {k: trained.get(k) for k in _TRAIN_KEYS},
            "eval": evaluated[s.key],
            "eval_reused": o.evaluation.reused,
        }
        if o.probes:
            students[s.key]["probes"] = {
                split: headline_metric(p.as_result(), cfg.setting)[1] for split, p in o.probes.items()
            }
    metric, _ = headline_metric(next(iter(evaluated.values())), cfg.setting)
    reused = {"teacher"} if (teacher.requests_this_run or {}).get("made") == 0 else set()
    for o in outcomes:
        if o.run.summary and o.run.summary.trained_steps_this_run == 0:
            reused.add(f"distill:{o.student.key}")
        if o.evaluation.reused:
            reused.add(f"eval:{o.student.key}")
        reused |= {f"eval:{o.student.key}@{split}" for split, p in o.probes.items() if p.reused}
    return {
        "run": {
            "task": cfg.task,
            "setting": cfg.setting,
            "n": cfg.n,
            "n_ablation": cfg.n_ablation,
            "train_questions": teacher.questions,
            "eval_split": cfg.eval_split,
            "eval_questions": next(iter(evaluated.values())).get("questions"),
            "student": cfg.recipe.student,
            "max_steps": cfg.recipe.max_steps,
            "out": cfg.out,
            "x_label": cfg.x_label,
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "wall_s": total_s,
            "stage_s": dict(stage_s),
            **_computed_times(stage_s, total_s, reused, previous_run),
        },
        "teacher": {k: summary.get(k) for k in _TEACHER_KEYS},
        "students": students,
        "headline": {
            "metric": metric,
            "comparisons": _comparisons(cfg, [o.student for o in outcomes], evaluated, correct or {}),
        },
        "paper": paper_reference(cfg.task, cfg.setting),
        **({"grid": _grid(cfg, outcomes, evaluated)} if cfg.students else {}),
    }


def _comparisons(
    cfg: PipelineConfig,
    plan: Sequence[Student],
    evaluated: Mapping[str, Mapping[str, Any]],
    correct: Mapping[str, Mapping[str, bool]],
) -> dict[str, Any]:
    """The first student against each other one, on the headline metric, with the demo's targets.

    All students answer the same test questions, so the difference is tested paired (McNemar's
    exact test, a paired bootstrap interval of the difference) when the per-question results are
    given; a target is met when the difference reaches it and p < 0.05."""
    plan = [s for s in plan if s.key == (s.condition or s.key)]  # an experiment's first seed of each
    main = cfg.reference or plan[0].key
    comparisons = {}
    for s in plan:
        if s.key == main:
            continue
        target = (
            TARGETS["label_only"]
            if s.label_only
            else TARGETS["n_ablation"]
            if s.n == min(cfg.n_ablation, default=0)
            else None
        )
        c = compare(
            headline_metric(evaluated[main], cfg.setting)[1],
            headline_metric(evaluated[s.key], cfg.setting)[1],
        )
        if c is not None:
            if main in correct and s.key in correct:
                c["paired"] = paired_difference(correct[main], correct[s.key], cfg.seed)
            significant = c["paired"]["p_value"] < ALPHA if "paired" in c else c["intervals_separated"]
            if cfg.task == "synthetic" and target is not None:
                c["target_points"] = target
                c["target_met"] = c["diff_points"] >= target and significant
            comparisons[f"{main}_vs_{s.key}"] = c
    return comparisons


def _grid(
    cfg: PipelineConfig, outcomes: Sequence[Outcome], evaluated: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """An experiment's conditions: the headline accuracy of each seed, their mean and spread."""
    grid: dict[str, Any] = {}
    for o in outcomes:
        s = o.student
        cell = grid.setdefault(
            s.condition,
            {
                "label": s.label,
                "x": s.x,
                "n": s.n,
                "corpus": o.training_set.summary.to_dict() if o.training_set.summary else {},
                "seeds": {},
            },
        )
        _, acc = headline_metric(evaluated[s.key], cfg.setting)
        cell["seeds"][str(s.seed)] = acc["accuracy"] if acc else None
    for cell in grid.values():
        accs = [a for a in cell["seeds"].values() if a is not None]
        cell["mean"] = round(sum(accs) / len(accs), 4) if accs else None
        cell["spread"] = [min(accs), max(accs)] if accs else None
    return grid


def _computed_times(
    stage_s: Mapping[str, float], total_s: float, reused: set[str], previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Seconds each stage took when it did its work (this run, or the run that did it)."""
    before = (previous or {}).get("stage_s_computed") or (previous or {}).get("stage_s") or {}
    computed = {k: before[k] if k in reused and k in before else v for k, v in stage_s.items()}
    wall = total_s + sum(computed.values()) - sum(stage_s.values())
    return {
        "stage_s_computed": computed,
        "wall_s_computed": round(wall, 1),
        "reused_stages": sorted(reused),
    }


def headline_lines(results: Mapping[str, Any]) -> list[str]:
    """One line per comparison: ``SCoTD (N=30) vs label-only: +41.3 points (greedy), intervals apart``."""
    students = results["students"]
    metric = results["headline"]["metric"]
    lines = []
    for key, c in results["headline"]["comparisons"].items():
        a, b = key.split("_vs_")
        if "paired" in c:
            pr = c["paired"]
            lo, hi = pr["diff_ci95"]
            sep = f"paired {_p(pr['p_value'])}, difference 95% CI [{lo:+.1f}, {hi:+.1f}]"
        else:
            sep = "95% intervals apart" if c["intervals_separated"] else "95% intervals OVERLAP"
        line = f"{students[a]['label']} vs {students[b]['label']}: {c['diff_points']:+.1f} points ({metric}), {sep}"
        if "target_met" in c:
            line += f"; target ≥ {c['target_points']:.0f} points: {'met' if c['target_met'] else 'MISSED'}"
        lines.append(line)
    return lines


def _train_table(results: Mapping[str, Any]) -> str:
    head = (
        "| student | corpus rows | questions | chains/question | steps | train loss | val loss | train time |"
    )
    rows = [head, "|---|---|---|---|---|---|---|---|"]
    for key, s in results["students"].items():
        c, t = s["corpus"], s["train"]
        per_q = f"{c['kept'] / max(1, c['questions_kept']):.1f}" if s["n"] is not None else "–"
        loss = (
            f"{t['train_loss_first']:.2f} → {t['train_loss_last']:.3f}"
            if t["train_loss_last"] is not None
            else "–"
        )
        val = f"{t['val_loss_last']:.3f}" if t["val_loss_last"] is not None else "–"
        rows.append(
            f"| {_row_label(key, results['students'])} | {c['kept']:,} | {c['questions_kept']:,} | {per_q} | {t['final_step']} | {loss} "
            f"| {val} | {t['wall_s']:.0f} s |"
        )
    return "\n".join(rows)


def _paper_table(results: Mapping[str, Any]) -> list[str]:
    paper = results.get("paper")
    if not paper:
        return []
    metric = results["headline"]["metric"]
    ours = {s["n"]: s for s in results["students"].values()}
    methods = paper["methods"]
    pairs = [
        ("label-only", ours.get(None), methods.get("label_only")),
        ("SCoTD", ours.get(results["run"]["n"]), methods.get("scotd")),
    ]
    lines = [
        "",
        f"## Beside the paper ({paper['setting']}, {paper['student']} student, accuracy %)",
        "",
        f"| method | this run ({metric}, {results['run']['student']}) | paper |",
        "|---|---|---|",
    ]
    for name, s, ref in pairs:
        mine = accuracy_cell(headline_metric(s["eval"], results["run"]["setting"])[1], ci=False) if s else "–"
        lines.append(f"| {name} | {mine} | {ref if ref is not None else '–'} |")
    if paper["n_ablation"]:
        lines += [
            "",
            "N ablation (paper: few-shot SCoTD with self-consistency):",
            "",
            "| N | this run | paper |",
            "|---|---|---|",
        ]
        for n_, ref in paper["n_ablation"].items():
            s = ours.get(int(n_))
            mine = (
                accuracy_cell(headline_metric(s["eval"], results["run"]["setting"])[1], ci=False)
                if s
                else "–"
            )
            lines.append(f"| {n_} | {mine} | {ref} |")
    return lines


def grid_section(results: Mapping[str, Any]) -> list[str]:
    """An experiment's table: each condition's headline accuracy per seed, mean and spread, and
    the paired comparison with the reference condition."""
    grid = results.get("grid")
    if not grid:
        return []
    metric = results["headline"]["metric"]
    comparisons = results["headline"]["comparisons"]
    ref_key = next(iter(comparisons), "").split("_vs_")[0]
    ref = grid[ref_key]["label"] if ref_key in grid else "reference"
    lines = [
        "",
        f"## Experiment ({metric}, %)",
        "",
        f"![experiment]({PipelineRun.GRID})",
        "",
        f"| condition | x | training rows | per seed | mean [min, max] | − {ref} (points; paired, first seed) |",
        "|---|---|---|---|---|---|",
    ]
    for key, cell in grid.items():
        seeds = " / ".join("–" if a is None else f"{100 * a:.1f}" for a in cell["seeds"].values())
        mean = (
            "–"
            if cell["mean"] is None
            else f"{100 * cell['mean']:.1f} [{100 * cell['spread'][0]:.1f}, {100 * cell['spread'][1]:.1f}]"
        )
        c = next((v for k, v in comparisons.items() if k.endswith(f"_vs_{key}")), None)
        # a comparison is reference − condition; the table reads condition − reference
        vs = "reference" if c is None else (
            f"{-c['paired']['diff_points']:+.1f} ({_p(c['paired']['p_value'])})" if "paired" in c else f"{-c['diff_points']:+.1f}"
        )  # fmt: skip
        rows = cell["corpus"].get("kept", "–")
        lines.append(
            f"| {cell['label']} | {'' if cell['x'] is None else cell['x']} | {rows} | {seeds} | {mean} | {vs} |"
        )
    return [*lines, ""]


def grid_png(results: Mapping[str, Any]) -> bytes:
    """The experiment's figure: mean accuracy per condition (numeric x: a line; else bars), the
    seeds' spread as error bars and each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = results["grid"]
    cells = [c for c in grid.values() if c["mean"] is not None]
    numeric = all(isinstance(c["x"], int | float) for c in cells)
    xs = [c["x"] if numeric else i for i, c in enumerate(cells)]
    means = [100 * c["mean"] for c in cells]
    err = [
        [m - 100 * c["spread"][0] for m, c in zip(means, cells, strict=True)],
        [100 * c["spread"][1] - m for m, c in zip(means, cells, strict=True)],
    ]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    if numeric:
        ax.errorbar(xs, means, yerr=err, marker="o", capsize=3, label="mean over seeds")
    else:
        ax.bar(xs, means, yerr=err, capsize=3, alpha=0.7, label="mean over seeds")
        ax.set_xticks(xs, [c["label"] for c in cells], rotation=20)
    for x, c in zip(xs, cells, strict=True):
        seeds = [100 * a for a in c["seeds"].values() if a is not None]
        ax.scatter([x] * len(seeds), seeds, s=10, color="k", alpha=0.5)
    paper = (results.get("paper") or {}).get("n_ablation") or {}
    if numeric and paper and all(str(int(x)) in paper for x in xs if float(x).is_integer()):  # an N curve
        ns = sorted(int(n) for n in paper)
        ax.plot(
            ns,
            [paper[str(n)] for n in ns],
            marker="^",
            linestyle="--",
            color="gray",
            label="paper (OPT-1.3B)",
        )
    title = f"{results['run']['task']}: {results['headline']['metric']} by condition"
    return finish_png(fig, ax, results["run"].get("x_label") or "condition", title)


def _probe_table(results: Mapping[str, Any]) -> list[str]:
    """Headline accuracy on the test split beside the robustness probes (contrast, ood), per student."""
    students = results["students"]
    splits = sorted({split for s in students.values() for split in s.get("probes", {})})
    if not splits:
        return []
    metric = results["headline"]["metric"]
    head = f"| student | {results['run']['eval_split']} | " + " | ".join(splits) + " |"
    rows = ["", f"## Robustness probes ({metric}, %)", "", head, "|---|" + "---|" * (1 + len(splits))]
    for key, s in students.items():
        test_cell = accuracy_cell(headline_metric(s["eval"], results["run"]["setting"])[1])
        cells = [accuracy_cell(s.get("probes", {}).get(split)) for split in splits]
        rows.append(f"| {_row_label(key, students)} | {test_cell} | " + " | ".join(cells) + " |")
    return [
        *rows,
        "",
        "contrast: each test question minimally edited so that its answer changes; "
        "ood: more reasoning steps than any training question.",
    ]


def _row_label(key: str, students: Mapping[str, Any]) -> str:
    """A student's label, with its key when seeds share the label ("N=30 (n30-s1)")."""
    label = students[key]["label"]
    return label if sum(s["label"] == label for s in students.values()) == 1 else f"{label} ({key})"


def _teacher_accuracy(results: Mapping[str, Any]) -> str:
    """Per-chain accuracy of the teacher, or of each teacher when the students' corpora came from
    several (``teacher_quality``); the parse rate and cost that follow are the first teacher's."""
    by_input: dict[str, list[str]] = {}
    accuracy: dict[str, float] = {}
    for s in results["students"].values():
        corpus = s.get("corpus") or {}
        if corpus.get("input") and corpus.get("teacher_accuracy") is not None:
            by_input.setdefault(corpus["input"], []).append(s["label"])
            accuracy[corpus["input"]] = corpus["teacher_accuracy"]
    if len(by_input) < 2:
        return f"per-chain accuracy {100 * results['teacher']['teacher_accuracy']:.1f}%,"
    each = "; ".join(f"{100 * accuracy[k]:.1f}% for {', '.join(labels)}" for k, labels in by_input.items())
    return f"per-chain accuracy by teacher: {each}; the first teacher's"


def report_markdown(results: Mapping[str, Any]) -> str:
    run, teacher = results["run"], results["teacher"]
    students = results["students"]
    any_eval = next(iter(students.values()))["eval"]
    ev = any_eval.get("run") or {}
    cost = (teacher.get("cost_usd") or {}).get("total", 0.0)
    lines = [
        f"# SCoTD on `{run['task']}` ({run['setting']})",
        "",
        f"Teacher `{teacher['teacher_model']}`: {teacher['samples']:,} chains for {teacher['questions']:,} training "
        f"questions (N={run['n']}), {_teacher_accuracy(results)} parse rate "
        f"{100 * teacher['parse_rate']:.1f}%, cost ${cost:.2f}. Students: `{run['student']}`, {run['max_steps']} steps "
        f"each, the same questions and recipe. Scored on {run['eval_questions']} `{run['eval_split']}` questions: greedy, "
        f"and {(any_eval.get('sampled') or {}).get('k_drawn', 0)} sampled votes at T={ev.get('temperature', '?')}.",
        "",
        "## Accuracy (%) with 95% bootstrap intervals",
        "",
        results_table({_row_label(key, students): s["eval"] for key, s in students.items()}),
        "",
        *[f"- {line}" for line in headline_lines(results)],
        *_paper_table(results),
        "",
        *grid_section(results),
        *_probe_table(results),
        "## Self-consistency",
        "",
        f"![vote curve]({PipelineRun.VOTE_CURVE})",
        "",
        "## N ablation",
        "",
        f"![N ablation]({PipelineRun.N_ABLATION})",
        "",
        "## Training",
        "",
        _train_table(results),
        "",
        "## Time",
        "",
        "| stage | seconds | this run |",
        "|---|---|---|",
        *[
            f"| {k} | {run['stage_s_computed'][k]:.0f} | {v:.0f}{' (reused)' if k in run['reused_stages'] else ''} |"
            for k, v in run["stage_s"].items()
        ],
        f"| **total** | **{run['wall_s_computed']:.0f}** | {run['wall_s']:.0f} |",
        "",
        "A re-run reuses what is finished (teacher ledger, trained students, evaluations); the first column is "
        "the time of the run that did the work.",
        "",
    ]
    return "\n".join(lines)


def n_ablation_png(results: Mapping[str, Any]) -> bytes:
    """Accuracy against teacher chains per question N, greedy and voted, label-only as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    cot = sorted((s for s in results["students"].values() if s["n"] is not None), key=lambda s: s["n"])
    ns = [s["n"] for s in cot]
    series: list[tuple[str, list[Mapping[str, Any] | None]]] = [
        ("greedy", [s["eval"].get("greedy") for s in cot])
    ]
    for s in cot:
        curve = (s["eval"].get("sampled") or {}).get("maj_at_k") or {}
        if curve:
            k = max(curve, key=int)
            series.append(
                (f"maj@{k}", [(c["eval"].get("sampled") or {}).get("maj_at_k", {}).get(k) for c in cot])
            )
            break
    for i, (name, points) in enumerate(series):
        xs = [n for n, p in zip(ns, points, strict=True) if p]
        ps = [p for p in points if p]
        acc = [100 * p["accuracy"] for p in ps]
        err = [
            [a - 100 * p["ci95"][0] for a, p in zip(acc, ps, strict=True)],
            [100 * p["ci95"][1] - a for a, p in zip(acc, ps, strict=True)],
        ]
        ax.errorbar(xs, acc, yerr=err, marker="o", capsize=3, color=f"C{i}", label=f"SCoTD, {name}")
    for s in results["students"].values():
        if s["n"] is None and s["eval"].get("greedy"):
            ax.axhline(
                100 * s["eval"]["greedy"]["accuracy"], linestyle="--", color="C3", label="label-only, greedy"
            )
    paper = results.get("paper")
    if paper and paper["n_ablation"]:
        pn = sorted(int(n) for n in paper["n_ablation"])
        ax.plot(
            pn,
            [paper["n_ablation"][str(n)] for n in pn],
            color="grey",
            marker="s",
            alpha=0.6,
            label="paper (OPT-1.3B, few-shot)",
        )
    ax.set_xscale("log")
    ticks = sorted(set(ns) | ({int(n) for n in paper["n_ablation"]} if paper else set()))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    title = f"N ablation on {results['run']['task']} (same questions, same steps)"
    return finish_png(fig, ax, "teacher chains per training question N", title)


def write_report(out: PipelineRun, results: Mapping[str, Any]) -> None:
    loc = out.location
    storage.write_bytes(loc, out.RESULTS, json.dumps(results, indent=2, default=str).encode())
    storage.write_bytes(loc, out.REPORT, report_markdown(results).encode())
    students, grid = results["students"], results.get("grid") or {}
    title = f"self-consistency on {results['run']['task']}/{results['run']['eval_split']}"
    if len(students) > len(grid) > 0:  # several seeds: one curve per condition (its first seed) stays legible
        models = {cell["label"]: students[key]["eval"] for key, cell in grid.items() if key in students}
        title += " (first seed)"
    else:
        models = {_row_label(k, students): s["eval"] for k, s in students.items()}
    storage.write_bytes(loc, out.VOTE_CURVE, vote_curve_png(models, title))
    storage.write_bytes(loc, out.N_ABLATION, n_ablation_png(results))
    if results.get("grid"):
        storage.write_bytes(loc, out.GRID, grid_png(results))


def rebuild_report(out_dir: str) -> dict[str, Any]:
    """Re-render the report and the plots from ``results.json`` alone."""
    out = PipelineRun(storage.location(out_dir).uri)
    results = out.results()
    if results is None:
        raise FileNotFoundError(f"no {out.RESULTS} in {out.uri}: run `scotd pipeline` first")
    write_report(out, results)
    return results
