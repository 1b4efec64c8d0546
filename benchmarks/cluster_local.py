"""The whole pipeline as a Ray job on the local autoscaling cluster (cluster/aws.yaml's node types).

One run: a local S3 server and ``scotd.localcluster`` (head ``CPU: 0``; ``cpu_sampler`` and
``gpu_worker`` from 0 nodes, the GPU a custom ``accelerator``), then
``ray job submit -- python jobs/pipeline.py --config jobs/configs/cluster_local.yaml --out s3://...``.
A watcher samples the autoscaler's own status record and where each stage's actors run, every
0.5 s. Mid-distill (after the first checkpoint reaches S3) the job's driver is SIGKILLed; the
same job is submitted again and must redo nothing finished: no teacher request bought again,
training resumed from the S3 checkpoint. Then the watcher waits for every worker node to be
removed as idle. Printed: per node type, when it was first needed and first up (scale-up
latency), where each stage's actors ran, the resubmission's figures and the wall times.

    python benchmarks/cluster_local.py [--no-kill]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scotd import storage
from scotd.localcluster.cluster import REPO, LocalCluster, up
from scotd.localcluster.s3 import local_s3
from scotd.localcluster.spec import LocalScale

STAGE_ACTORS = {"teacher": "TeacherSampler", "distill": "RayTrainWorker", "eval": "StudentGenerator"}
OUT = "s3://scotd/pipeline"


class Timeline:
    """Every 0.5 s: worker nodes by type, node id -> type, and the nodes of each stage's actors."""

    def __init__(self, lc: LocalCluster) -> None:
        self.lc, self.t0 = lc, time.monotonic()
        self.first_up: dict[str, float] = {}
        self.max_active: dict[str, int] = {}
        self.types: dict[str, str] = {}
        self.stage_nodes: dict[str, set[str]] = {k: set() for k in STAGE_ACTORS}
        self.last_active: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.types.update(self.lc.node_types())
                self.last_active = self.lc.active()
                for kind, n in self.last_active.items():
                    self.first_up.setdefault(kind, self.now())
                    self.max_active[kind] = max(n, self.max_active.get(kind, 0))
                for stage, part in STAGE_ACTORS.items():
                    self.stage_nodes[stage].update(n for _, n in self.lc.actors(part))
            except Exception:  # a poll racing a dying node; the next one sees it
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _submit(lc: LocalCluster, client: Any, label: str) -> str:
    job_id = f"scotd-bench-{label}-{int(time.time())}"
    client.submit_job(
        entrypoint=f"python jobs/pipeline.py --config jobs/configs/cluster_local.yaml --out {OUT} --progress false",
        submission_id=job_id,
        runtime_env={"working_dir": str(REPO), "excludes": [".git", ".venv", "outputs", "*_cache"]},
    )
    return job_id


def _wait(client: Any, job_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return str(status.value)
        time.sleep(1)
    client.stop_job(job_id)
    return "TIMEOUT"


def _stage_marks(client: Any, job_id: str) -> dict[str, str]:
    marks: dict[str, str] = {}
    for line in client.get_job_logs(job_id).splitlines():
        if "── " in line:
            stage = line.split("── ", 1)[1].strip()
            marks.setdefault(stage, line.split(" ", 1)[0])
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-kill", action="store_true", help="no driver kill / resubmission")
    parser.add_argument("--timeout-s", type=float, default=1800)
    args = parser.parse_args()
    from ray.job_submission import JobSubmissionClient

    wall0 = time.monotonic()
    with local_s3("scotd") as s3:
        os.environ.update(s3)
        lc = up(scale=LocalScale(idle_timeout_minutes=0.25), env=s3)
        try:
            client = JobSubmissionClient(lc.dashboard_url)
            timeline = Timeline(lc)
            first = _submit(lc, client, "first")
            checkpoints_at_kill = None
            if not args.no_kill:
                run_root = storage.location(f"{OUT}/students")
                deadline = time.monotonic() + args.timeout_s
                while time.monotonic() < deadline and not storage.list_files(
                    run_root, suffix="trainer_state.json"
                ):
                    if client.get_job_status(first).is_terminal():
                        break
                    time.sleep(1)
                if client.get_job_status(first).is_terminal():
                    ended = client.get_job_info(first)
                    print(f"the job ended before its first checkpoint: {ended.status} ({ended.message})")
                    print(client.get_job_logs(first)[-6000:])
                    return 1
                states = storage.list_files(run_root, suffix="trainer_state.json")
                checkpoints_at_kill = len(states)
                info = client.get_job_info(first).driver_info
                assert info is not None, "the job has no driver yet"
                pid = info.pid
                os.kill(int(pid), signal.SIGKILL)
                print(
                    f"[{timeline.now():6.1f} s] driver (pid {pid}) SIGKILLed mid-distill ({len(states)} checkpoint files in S3)"
                )
                status = _wait(client, first, 120)
                print(f"[{timeline.now():6.1f} s] first job: {status}; submitting it again")
                second = _submit(lc, client, "again")
                job = second
            else:
                job = first
            status = _wait(client, job, args.timeout_s)
            done_at = timeline.now()
            print(f"[{done_at:6.1f} s] job {job}: {status}")
            logs = client.get_job_logs(job)
            if status != "SUCCEEDED":
                print(logs[-6000:])
                return 1
            removed_s = None
            try:
                lc.wait_for(
                    "every worker node removed as idle", lambda: not timeline.last_active or None, 300
                )
                removed_s = timeline.now() - done_at
            except TimeoutError as e:
                print(e)
            timeline.stop()
            jobs = [("first", first)] + ([] if args.no_kill else [("again", job)])
            marks = {label: _stage_marks(client, jid) for label, jid in jobs}
            runs = storage.location(f"{OUT}/students")
            distill = [
                json.loads(storage.read_bytes(runs, f) or b"{}")
                for f in storage.list_files(runs, suffix="summary.json")
                if f.count("/") == 1
            ]
        finally:
            lc.down()
    print("\n## node types (autoscaler's own record)")
    print("| type | first up at (s) | most at once |")
    print("|---|---|---|")
    for kind in sorted(timeline.max_active):
        print(f"| {kind} | {timeline.first_up[kind]:.1f} | {timeline.max_active[kind]} |")
    print("\n## where each stage's actors ran")
    for stage, nodes in timeline.stage_nodes.items():
        kinds = sorted({timeline.types.get(n, "?") for n in nodes})
        print(f"- {stage}: {len(nodes)} node(s), types {kinds}")
    print("\n## stage marks (job logs)")
    for label, stage_marks in marks.items():
        print(f"- {label}: {stage_marks}")
    if not args.no_kill:
        print("\n## resubmission")
        bought = [ln for ln in logs.splitlines() if "already in the ledger" in ln]
        print(f"- driver killed with {checkpoints_at_kill} checkpoint file(s) in S3")
        print(
            f"- teacher on resubmission: {bought[0].split('INFO ')[-1] if bought else 'no plan line found'}"
        )
        for d in distill:
            print(
                f"- distill {d.get('run_name')}: final step {d.get('final_step')}, started from checkpoint "
                f"{d.get('started_from_checkpoint')}, resumed at {d.get('resumed_at_steps')}, "
                f"steps trained by the resubmitted job {d.get('trained_steps_this_run')}"
            )
    gone = "not within the wait" if removed_s is None else f"{removed_s:.1f} s later"
    print(
        f"\nwall: job done at {done_at:.1f} s; all worker nodes gone {gone}; total {time.monotonic() - wall0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
