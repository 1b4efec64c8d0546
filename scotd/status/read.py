"""``read_status(dir)``: what kind of directory this is, who holds it, and how far it got.

The kind comes from the first line of the resolved ``config.yaml`` every stage writes first
(``# SampleConfig, resolved ...``); without one (torn, or an older run) from the files present.
A pipeline or experiment is read stage by stage: its teacher(s), then each student of its plan
(rebuilt from its config, as ``scotd pipeline`` planned it) through corpus, training and evaluation.
"""

from __future__ import annotations

import dataclasses
import posixpath
import time
from typing import Any

from scotd import storage
from scotd.artifacts import Evaluation, PipelineRun, StudentRun, TeacherSamples, TrainingSet
from scotd.outlock import LOCK_FILE, Holder, who_holds
from scotd.status.kinds import READERS, state_of, stopped_note
from scotd.status.model import Reader, RunStatus, StageStatus, count, get, number, percent

MAX_CHILDREN = 20  # runs listed for a directory of runs (e.g. a distill --out)
MAX_RESULT_ROWS = 12  # headline table rows printed for a finished pipeline


def read_status(target: str | storage.Location, now: float | None = None) -> RunStatus:
    """The standing of the directory (a path or URI) ``target``; never raises for what it finds
    there (missing, empty, torn, half-written): those show as ``missing`` / ``empty`` / ``?``."""
    loc = target if isinstance(target, storage.Location) else storage.location(target)
    now = time.time() if now is None else now
    found = Reader(loc).stat()
    if found is None:
        return RunStatus(
            path=loc.uri,
            kind="missing",
            state="missing",
            progress="-",
            notes=[f"nothing at {loc.uri}: no run has written there (check the path or URI)"],
        )
    if not found.is_dir:  # a stage's file (summary.json, corpus.parquet): its directory
        loc = storage.Location(loc.fs, posixpath.dirname(loc.path), loc.uri.rsplit("/", 1)[0])
    return status_of(Reader(loc), now)


def status_of(r: Reader, now: float) -> RunStatus:
    """The status of the directory ``r`` reads; a failure to read it whole is a note, not a crash."""
    start = len(r.notes)  # a subdirectory's reader shares its parent's notes: report only ours
    holder = _holder(r)
    try:
        kind, cfg = detect(r)
        if kind in READERS:
            status = READERS[kind](r, holder, cfg, now)
        elif kind in ("pipeline", "experiment"):
            status = pipeline_status(r, holder, cfg, kind, now)
        else:
            status = other_status(r, holder, kind, now)
    except Exception as e:  # a reader's bug or an unforeseen layout: say so, keep the rest
        state = "running" if holder is not None and holder.live else "incomplete"
        status = RunStatus(path=r.loc.uri, kind="unknown", state=state, holder=holder)
        r.note(f"could not read this directory whole ({type(e).__name__}: {e})")
    return dataclasses.replace(status, notes=[*r.notes[start:], *status.notes])


def _holder(r: Reader) -> Holder | None:
    try:
        return who_holds(r.loc)
    except Exception as e:
        r.note(
            f"{r.prefix}{LOCK_FILE}: could not read ({type(e).__name__}: {e}); whether it is live is unknown"
        )
        return None


def detect(r: Reader) -> tuple[str, dict[str, Any] | None]:
    """``(kind, resolved config)``: the config's header names the stage; else the files present do."""
    kind, cfg = r.config()
    if kind == "pipeline":
        return ("experiment" if get(cfg, "students") else "pipeline"), cfg
    if kind:
        return kind, cfg
    entries = r.entries()
    files = {e.path.rsplit("/", 1)[-1] for e in entries if not e.is_dir}
    dirs = {e.path.rsplit("/", 1)[-1] for e in entries if e.is_dir}
    if PipelineRun.RESULTS in files or {PipelineRun.TEACHER, PipelineRun.STUDENTS} & dirs:
        return ("experiment" if get(r.json(PipelineRun.RESULTS), "grid") else "pipeline"), None
    distill_dirs = {StudentRun.EXPORT, StudentRun.STUDENT_INIT}
    if {StudentRun.METRICS, StudentRun.VALIDATION} & files or distill_dirs & dirs:
        return "distill", None
    if any(d.startswith("checkpoint_") for d in dirs):
        return "distill", None
    if {TeacherSamples.SAMPLES, TeacherSamples.ERRORS} & files or TeacherSamples.LEDGER in dirs:
        return "sample", None
    if {TrainingSet.TRAIN, TrainingSet.STATS} & files:
        return "corpus", None
    if {Evaluation.METRICS, Evaluation.PREDICTIONS, Evaluation.IDENTITY} & files:
        return "eval", None
    summary = r.json(StudentRun.SUMMARY) if StudentRun.SUMMARY in files else None
    if summary and "fingerprint" in summary:
        return "distill", None
    if summary and "requests_planned" in summary:
        return "sample", None
    if not (files - {LOCK_FILE}) and not dirs:
        return "empty", None
    return "unknown", None


def other_status(r: Reader, holder: Holder | None, kind: str, now: float) -> RunStatus:
    """An empty directory, or one scotd did not write itself: the runs directly under it, if any
    (a ``scotd distill --out`` holds one directory per run)."""
    stages = []
    for name in r.dirs()[:MAX_CHILDREN]:
        child = r.child(name)
        if child.config()[0] is None:
            continue
        st = status_of(child, now)
        stages.append(StageStatus("run", name, st.kind, st.state, f"{st.kind}: {st.progress}", {st.kind: st}))
    states = {st.state for st in stages}
    if holder is not None and holder.live:
        state = "running"
    elif kind == "empty":
        state = "empty"
    else:  # a directory of runs stands where its runs do
        state = next((x for x in ("running", "failed", "incomplete") if x in states), "finished")
        state = state if stages else "incomplete"
    progress = "nothing written yet" if kind == "empty" else "?"
    if stages:
        progress = f"{len(stages)} run(s) inside: " + ", ".join(
            f"{sum(st.state == x for st in stages)} {x}" for x in sorted(states)
        )
    if kind == "unknown" and not stages:
        r.note("no file that scotd writes is here: is this the run's directory?")
    return RunStatus(path=r.loc.uri, kind=kind, state=state, holder=holder, progress=progress, stages=stages)


# ── scotd pipeline / experiment ──────────────────────────────────────────────────────────────────


@dataclasses.dataclass(frozen=True)
class _Planned:
    """One student as the pipeline planned it (or as found on disk, when the plan cannot be rebuilt)."""

    key: str
    label: str
    corpus: str  # its directory under corpus/
    seed: int | None = None
    label_only: bool | None = None
    teacher: str = PipelineRun.TEACHER  # its teacher's directory


def _plan(r: Reader, cfg: dict[str, Any] | None) -> list[_Planned] | None:
    if not cfg:
        return None
    try:
        from scotd.pipeline.config import PipelineConfig, students

        values = dict(cfg)
        if values.get("students"):  # the resolved file lists the default plan's fields too
            values.pop("n_ablation", None)
            values.pop("label_only", None)
        return [
            _Planned(
                s.key,
                s.label,
                s.condition or s.key,
                s.seed,
                s.label_only,
                f"{PipelineRun.TEACHER}-{s.teacher}" if s.teacher else PipelineRun.TEACHER,
            )
            for s in students(PipelineConfig.model_validate(values))
        ]
    except Exception as e:
        r.note(
            f"config.yaml: the plan could not be rebuilt ({type(e).__name__}); students are listed from disk"
        )
        return None


def _from_disk(r: Reader) -> list[_Planned]:
    keys = dict.fromkeys(
        [*r.dirs(PipelineRun.CORPORA), *(d for d in r.dirs(PipelineRun.EVALS) if "@" not in d)]
    )
    return [_Planned(k, k, k) for k in keys]


def _runs(r: Reader, now: float) -> list[tuple[dict[str, Any], float, RunStatus]]:
    """Every training run under ``students/``: its config, the config's age, its status."""
    out = []
    for name in r.dirs(PipelineRun.STUDENTS):
        child = r.child(f"{PipelineRun.STUDENTS}/{name}")
        _, cfg = child.config()
        written = child.stat("config.yaml")
        out.append((cfg or {}, (written.mtime or 0.0) if written else 0.0, status_of(child, now)))
    return out


def _run_of(s: _Planned, runs: list[tuple[dict[str, Any], float, RunStatus]]) -> RunStatus | None:
    """The newest training run of ``s``: on its corpus, with its seed and target."""
    mine = [
        (when, st)
        for cfg, when, st in runs
        if str(cfg.get("corpus", "")).rstrip("/").endswith(f"/{PipelineRun.CORPORA}/{s.corpus}")
        and (s.seed is None or cfg.get("seed") == s.seed)
        and (s.label_only is None or bool(cfg.get("label_only")) == s.label_only)
    ]
    return max(mine, key=lambda x: x[0])[1] if mine else None


def _child(r: Reader, relpath: str, now: float) -> RunStatus | None:
    child = r.child(relpath)
    return status_of(child, now) if child.stat() is not None else None


def _student_line(s: _Planned, parts: dict[str, RunStatus], live: bool) -> tuple[str, str]:
    """One student's line, and its state: a student the live pipeline has not reached is pending."""
    corpus, run, ev = parts.get("corpus"), parts.get("distill"), parts.get("eval")
    bits = [f"corpus {corpus.state if corpus else 'pending'}"]
    if run:
        f = run.facts
        bits.append(f"train {count(number(f.get('step')))}/{count(number(f.get('max_steps')))} ({run.state})")
    else:
        bits.append("train pending")
    if ev and ev.state == "finished":
        accs = [f"{k} {percent(v)}" for k, v in ev.facts.items() if k == "greedy" or k.startswith("maj@")]
        bits.append(f"eval {', '.join(accs) or '?'} ({ev.state})")
    else:
        bits.append(f"eval {ev.state if ev else 'pending'}")
    states = [p.state for p in parts.values()]
    if "failed" in states:
        state = "failed"
    elif "running" in states:
        state = "running"
    elif ev and ev.state == "finished":
        state = "finished"
    else:
        state = "pending" if live or not states else "incomplete"
    return state, f"{s.label}: " + ", ".join(bits)


def _results(r: Reader, results: dict[str, Any]) -> list[str]:
    """The finished run's accuracy table and headline comparisons, as ``report.md`` has them."""
    try:
        from scotd.eval.report import results_table
        from scotd.pipeline.report import headline_lines

        rows = results_table({s["label"]: s["eval"] for s in results["students"].values()}).splitlines()
        if len(rows) > MAX_RESULT_ROWS + 2:
            rows = [*rows[: MAX_RESULT_ROWS + 2], f"… {len(rows) - MAX_RESULT_ROWS - 2} more in report.md"]
        return rows + [f"- {line}" for line in headline_lines(results)]
    except Exception as e:
        r.note(f"{PipelineRun.RESULTS}: could not summarise ({type(e).__name__}: {e}); see report.md")
        return []


def pipeline_status(
    r: Reader, holder: Holder | None, cfg: dict[str, Any] | None, kind: str, now: float
) -> RunStatus:
    plan = _plan(r, cfg)
    planned = plan if plan is not None else _from_disk(r)
    on_disk = [d for d in r.dirs() if d == PipelineRun.TEACHER or d.startswith(f"{PipelineRun.TEACHER}-")]
    teacher_dirs = list(dict.fromkeys([*(s.teacher for s in planned), *on_disk])) or [PipelineRun.TEACHER]
    stages: list[StageStatus] = []
    for name in teacher_dirs:
        st = _child(r, name, now)
        text = st.progress if st else "not started"
        stages.append(
            StageStatus(
                "teacher", name, name, st.state if st else "pending", text, {"sample": st} if st else {}
            )
        )
    runs = _runs(r, now)
    live = holder is not None and holder.live
    for s in planned:
        parts = {
            k: v
            for k, v in (
                ("corpus", _child(r, f"{PipelineRun.CORPORA}/{s.corpus}", now)),
                ("distill", _run_of(s, runs)),
                ("eval", _child(r, f"{PipelineRun.EVALS}/{s.key}", now)),
            )
            if v is not None
        }
        state, text = _student_line(s, parts, live)
        stages.append(StageStatus("student", s.key, s.label, state, text, parts))

    results = r.json(PipelineRun.RESULTS)
    failed = next((st for st in stages if st.state == "failed"), None)
    last_error = None
    if failed:
        bad = next(p for p in failed.parts.values() if p.state == "failed")
        last_error = f"{failed.role} {failed.name} ({bad.kind}): {bad.last_error or 'failed'}"
    state = state_of(
        holder, results is not None, failed is not None, anything=bool(cfg or on_disk or planned)
    )
    students = [st for st in stages if st.role == "student"]

    def done(part: str) -> int:
        return sum(1 for st in students if (st.parts.get(part) and st.parts[part].state == "finished"))

    teacher_states = [st.state for st in stages if st.role == "teacher"]
    teacher = (
        f"teacher {teacher_states[0]}"
        if len(teacher_states) == 1
        else f"teachers {teacher_states.count('finished')}/{len(teacher_states)} finished"
    )
    progress = (
        f"{teacher}; corpora {done('corpus')}/{len(students)}; "
        f"trained {done('distill')}/{len(students)}; evaluated {done('eval')}/{len(students)}"
    )
    teachers = [st.parts["sample"] for st in stages if st.role == "teacher" and "sample" in st.parts]
    spends = [t.spend_usd for t in teachers]
    spend = round(sum(x for x in spends if x is not None), 6) if any(x is not None for x in spends) else None
    if spend is None and results is not None:
        spend = number(get(results, "teacher", "cost_usd", "total"))
    current = [
        (st, p) for st in stages for p in st.parts.values() if p.state == "running" and p.eta_s is not None
    ]
    eta, eta_of = (
        (current[0][1].eta_s, f"{current[0][0].role} {current[0][0].name}: {current[0][1].kind}")
        if current
        else (None, "")
    )
    notes = (
        [stopped_note(holder) + "; the same command resumes, redoing nothing finished"]
        if state == "incomplete"
        else []
    )
    return RunStatus(
        path=r.loc.uri,
        kind=kind,
        state=state,
        holder=holder,
        progress=progress,
        done=done("eval"),
        total=len(students),
        unit="students evaluated",
        facts={"students": len(students), "trained": done("distill"), "evaluated": done("eval")},
        spend_usd=spend,
        budget_usd=number(get(cfg, "max_cost_usd")),
        eta_s=eta,
        eta_of=eta_of,
        last_error=last_error,
        stages=stages,
        results=_results(r, results) if results is not None and not live else [],
        notes=notes,
    )
