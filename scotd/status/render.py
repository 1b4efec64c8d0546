"""``RunStatus`` as one screen of text: one labelled line per fact, the labels stable for scripts.

kind:       distill  /runs/tiny-scotd-3f2a...
state:      running: scotd distill tiny-scotd-3f2a... (pid 4242 on gpu-1, since 12:00:03, 5m 03s ago)
progress:   step 420/800 (52%), loss 1.2345, 2.10 steps/s, checkpoint 1m 05s old (step 400)
spend:      -
eta:        3m 01s
last error: -
"""

from __future__ import annotations

import time

from scotd.outlock import Holder
from scotd.status.model import RunStatus, duration

WIDTH = 12  # the label column
DOLLAR_KINDS = ("sample", "pipeline", "experiment")  # the stages that spend money on a teacher


def _line(label: str, text: str) -> str:
    return f"{label + ':':<{WIDTH}}{text}"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "?"


def holder_text(h: Holder, now: float) -> str:
    where = f"pid {h.pid if h.pid is not None else '?'} on {h.host or '?'}"
    ago = f", {duration(now - h.since)} ago" if h.since else ""
    text = f"{h.command or 'a run'} ({where}, since {_when(h.since)}{ago})"
    if h.expires_at:
        text += f", lease until {_when(h.expires_at)}"
    return text


def state_text(s: RunStatus, now: float) -> str:
    if s.holder is not None and s.holder.live:
        return f"running: {holder_text(s.holder, now)}"
    if s.holder is not None:  # a lock file naming a holder that is gone
        return f"{s.state} (last held by {holder_text(s.holder, now)}; gone)"
    return s.state


def spend_text(s: RunStatus) -> str:
    if s.spend_usd is None and s.budget_usd is None:
        return "?" if s.kind in DOLLAR_KINDS and s.state not in ("empty", "missing") else "-"
    spent = "?" if s.spend_usd is None else f"${s.spend_usd:,.2f}"
    return f"{spent} of ${s.budget_usd:,.2f} cap" if s.budget_usd is not None else f"{spent} (no cap)"


def render(s: RunStatus, now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = [
        _line("kind", f"{s.kind}  {s.path}"),
        _line("state", state_text(s, now)),
        _line("progress", s.progress),
    ]
    for st in s.stages:
        lines.append(_line(st.role, f"{st.name:<18} {st.state:<10} {st.text}"))
    lines += [_line("results", row) for row in s.results]
    eta = "-" if s.eta_s is None else duration(s.eta_s) + (f" ({s.eta_of})" if s.eta_of else "")
    lines += [
        _line("spend", spend_text(s)),
        _line("eta", eta),
        _line("last error", s.last_error or "-"),
    ]
    lines += [_line("note", n) for n in s.notes]
    return "\n".join(lines)
