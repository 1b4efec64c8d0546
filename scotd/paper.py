"""The paper's published numbers (Li et al., ACL 2023; shared/docs/recipe.md), for reports to sit beside.

OPT-1.3B student, validation accuracy in %. ``None`` where the paper has no number.
"""

from __future__ import annotations

from typing import Any

# setting -> method -> task -> accuracy %
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    "supervised": {
        "label_only": {"csqa": 63.0, "quarel": 59.0, "openbookqa": 60.2},
        "greedy_cot": {"csqa": 68.2, "quarel": 71.2, "openbookqa": 50.0},
        "scotd": {"csqa": 67.0, "quarel": 83.8, "openbookqa": 67.0},
    },
    "few-shot": {
        "label_only": {"csqa": 62.7, "quarel": 65.6, "openbookqa": 59.8},
        "greedy_cot": {"csqa": 64.6, "quarel": 64.7, "openbookqa": 48.8},
        "scotd": {"csqa": 64.7, "quarel": 73.0, "openbookqa": 57.8},
    },
}

# Few-shot SCoTD with self-consistency, by teacher samples per question N.
PAPER_N_ABLATION: dict[str, dict[int, float]] = {
    "csqa": {1: 53.4, 5: 63.0, 10: 62.4, 20: 64.1, 30: 64.7},
    "quarel": {1: 62.6, 5: 66.2, 10: 70.1, 20: 71.2, 30: 73.0},
    "openbookqa": {1: 38.0, 5: 37.6, 10: 51.8, 20: 59.8, 30: 57.8},
}

# Teacher (GPT-3 code-davinci-002) prompting: no CoT / greedy CoT / self-consistency.
PAPER_TEACHER: dict[str, dict[str, float]] = {
    "csqa": {"no_cot": 82.1, "greedy_cot": 77.6, "self_consistency": 81.3},
    "quarel": {"no_cot": 86.9, "greedy_cot": 83.3, "self_consistency": 86.0},
    "openbookqa": {"no_cot": 83.4, "greedy_cot": 71.8, "self_consistency": 86.4},
}


def paper_reference(task: str, setting: str) -> dict[str, Any] | None:
    """What the paper reports for ``task`` in ``setting``, or None for tasks it did not run."""
    results = PAPER_RESULTS.get(setting, {})
    if not any(task in by_task for by_task in results.values()):
        return None
    return {
        "setting": setting,
        "student": "facebook/opt-1.3b",
        "methods": {method: by_task[task] for method, by_task in results.items() if task in by_task},
        # str keys, as after a JSON round trip (results.json)
        "n_ablation": {str(n): acc for n, acc in PAPER_N_ABLATION.get(task, {}).items()},
        "teacher": PAPER_TEACHER.get(task, {}),
    }
