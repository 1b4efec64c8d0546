"""The cost of watching: the same small teacher stage, and the same short training run, with
``SCOTD_METRICS=1`` and ``=0``.

One local Ray cluster (8 logical CPUs, loopback, a fixed metrics export port) is started once;
each trial is a fresh driver process that joins it with ``runtime_env={"env_vars":
{"SCOTD_METRICS": on|off}}`` (so the sampler and limiter actors see the switch too) and runs
``run_sample`` against its own embedded teacher (``scotd teacher-sim``, fast latency, no rate
limit; our limiter at a high RPM) into a fresh output directory. Trials alternate on/off,
``--repeats`` each; the table gives the median ``sampling_s`` (Ray Data pool start-up + buying,
from summary.json) and the driver's ``run_sample`` wall time, and the on/off ratios. The training
trials (``--steps``, 0 = skip) run ``run_distill`` of the tiny student on a demo corpus (one
worker, 2 threads, the synthetic preset) and compare the median logged ``steps_per_s`` (the
training loop only), where rank 0 sets its gauges at every log interval.

    PYTHONPATH=. python benchmarks/metrics_overhead.py [--questions 80] [--steps 120] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TRIAL = textwrap.dedent(
    """
    import json, sys, time
    import ray
    from scotd.config import load_config
    from scotd.sample.config import SampleConfig
    from scotd.sample.run import run_sample
    from scotd.teacher.sim.process import TeacherSimProcess

    address, out, flag, questions = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ray.init(address=address, runtime_env={"env_vars": {"SCOTD_METRICS": flag}}, log_to_driver=False)
    with TeacherSimProcess(["--latency-base-ms", "20", "--latency-per-token-ms", "0.2"]) as sim:
        cfg = load_config(SampleConfig, overrides={
            "task": "synthetic", "limit": questions, "n": 2, "out": out, "progress": False,
            "teacher": {"base_url": sim.base_url, "timeout_s": 10.0},
            "limits": {"rpm": 60000, "tpm": 0},
        })
        t0 = time.perf_counter()
        s = run_sample(cfg).summary
        wall = time.perf_counter() - t0
    print("RESULT " + json.dumps({"wall_s": wall, "sampling_s": s.sampling_s, "made": s.requests_this_run["made"]}))
    """
)


DISTILL_TRIAL = textwrap.dedent(
    """
    import json, sys, time
    import ray
    from scotd.config import load_config
    from scotd.corpus.demo import write_demo_corpus
    from scotd.distill.config import DistillConfig
    from scotd.distill.run import run_distill

    address, out, flag, steps, preset = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    ray.init(address=address, runtime_env={"env_vars": {"SCOTD_METRICS": flag}}, log_to_driver=False)
    corpus = write_demo_corpus(out + "-corpus", questions=64, per_question=4)
    cfg = load_config(DistillConfig, preset, overrides={
        "corpus": str(corpus), "out": out, "num_workers": 1, "cpus_per_worker": 1, "torch_threads": 2,
        "max_steps": steps, "log_every_steps": 5, "eval_every_steps": steps, "checkpoint_every_steps": steps,
        "val_fraction": 0.0,
    })
    t0 = time.perf_counter()
    s = run_distill(cfg).summary
    print("RESULT " + json.dumps({"wall_s": time.perf_counter() - t0, "steps_per_s": s.steps_per_s_median,
                                  "tokens_per_s": s.tokens_per_s_median}))
    """
)


def _trial(script: Path, args: list[str], env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=600
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"trial failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return dict(json.loads(line[7:]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--steps", type=int, default=120, help="training steps per distill trial (0 = no distill trials)"
    )
    args = ap.parse_args()
    for k, v in {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
        "RAY_metrics_report_interval_ms": "1000",
    }.items():
        os.environ.setdefault(k, v)
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    ray.init(
        address="local",
        num_cpus=8,
        include_dashboard=False,
        _metrics_export_port=_free_port(),
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    results: dict[str, list[dict[str, float]]] = {"1": [], "0": []}
    with tempfile.TemporaryDirectory(prefix="scotd-mo-") as tmp:
        script = Path(tmp) / "trial.py"
        script.write_text(TRIAL)
        distill_script = Path(tmp) / "distill_trial.py"
        distill_script.write_text(DISTILL_TRIAL)
        preset = str(REPO / "jobs" / "configs" / "distill_synthetic.yaml")
        trained: dict[str, list[dict[str, float]]] = {"1": [], "0": []}
        for i in range(args.repeats):
            for flag in ("1", "0"):
                out = Path(tmp) / f"run-{flag}-{i}"
                r = _trial(script, [address, str(out), flag, str(args.questions)], env)
                results[flag].append(r)
                print(f"trial {i} SCOTD_METRICS={flag}: {json.dumps(r)}", flush=True)
                if args.steps:
                    d = _trial(
                        distill_script,
                        [address, str(Path(tmp) / f"d-{flag}-{i}"), flag, str(args.steps), preset],
                        env,
                    )
                    trained[flag].append(d)
                    print(f"trial {i} SCOTD_METRICS={flag} distill: {json.dumps(d)}", flush=True)
    ray.shutdown()
    med = {
        f: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "sampling_s")}
        for f, rs in results.items()
    }
    print(f"\n{args.questions} questions x n=2, {args.repeats} trials each (median)")
    print(f"{'':16}{'sampling_s':>12}{'wall_s':>10}")
    for f, label in (("1", "SCOTD_METRICS=1"), ("0", "SCOTD_METRICS=0")):
        print(f"{label:16}{med[f]['sampling_s']:>12.2f}{med[f]['wall_s']:>10.2f}")
    print(
        f"{'on/off ratio':16}{med['1']['sampling_s'] / med['0']['sampling_s']:>12.3f}"
        f"{med['1']['wall_s'] / med['0']['wall_s']:>10.3f}"
    )
    if args.steps:
        dm = {
            f: {k: statistics.median(r[k] for r in rs) for k in ("steps_per_s", "tokens_per_s")}
            for f, rs in trained.items()
        }
        print(
            f"\ndistill, tiny student, {args.steps} steps, {args.repeats} trials each (median of logged rates)"
        )
        print(f"{'':16}{'steps_per_s':>12}{'tokens_per_s':>14}")
        for f, label in (("1", "SCOTD_METRICS=1"), ("0", "SCOTD_METRICS=0")):
            print(f"{label:16}{dm[f]['steps_per_s']:>12.2f}{dm[f]['tokens_per_s']:>14.0f}")
        print(
            f"{'on/off ratio':16}{dm['1']['steps_per_s'] / dm['0']['steps_per_s']:>12.3f}"
            f"{dm['1']['tokens_per_s'] / dm['0']['tokens_per_s']:>14.3f}"
        )


if __name__ == "__main__":
    main()
