"""The cluster story on one machine: an autoscaling cluster with cluster/aws.yaml's node types.

One local cluster for the module (``scotd.localcluster``: Ray's fake multi-node provider under the
real autoscaler; a head with ``CPU: 0``; ``cpu_sampler`` and ``gpu_worker`` nodes from 0, the GPU a
custom ``accelerator`` resource) and a local S3 server for every output (nodes share no disk).
Each stage runs as a user runs it, a CLI driver joined to the cluster, and each test asserts from
the autoscaler's own status record: the node type meant for the stage appears, the stage's actors
run only there, a node killed mid-stage (its raylet SIGKILLed) is survived with nothing paid twice,
and idle nodes are removed afterwards. Recovery times are printed (``-s``) for the record;
``benchmarks/cluster_local.py`` runs the whole pipeline job on this cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scotd import storage
from scotd.corpus.demo import write_demo_corpus
from scotd.localcluster.cluster import HEAD_TYPE, LocalCluster, up
from scotd.localcluster.head import head_env
from scotd.localcluster.s3 import local_s3
from scotd.localcluster.spec import LocalScale
from scotd.teacher.ledger import Ledger
from scotd.teacher.sim.process import TeacherSimProcess

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

BUCKET = "scotd"
SAMPLER, TRAINER = "cpu_sampler", "gpu_worker"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, dict[str, str]]]:
    with local_s3(BUCKET) as s3:
        scale = LocalScale(
            idle_timeout_minutes=0.4, heartbeat_timeout_s=8
        )  # idle nodes stay ~24 s: not removed under a resubmitted job
        lc = up(scale=scale, env=s3, workdir=str(tmp_path_factory.mktemp("cluster")))
        try:
            yield lc, s3
        finally:
            lc.down()


@pytest.fixture
def on_s3(cluster: tuple[LocalCluster, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in cluster[1].items():
        monkeypatch.setenv(k, v)
    return cluster[1]


class Watcher:
    """Samples, every 0.5 s, which node types the autoscaler runs and where actors of a class live."""

    def __init__(self, lc: LocalCluster, actor_part: str) -> None:
        self.lc, self.actor_part = lc, actor_part
        self.types: dict[str, str] = {}  # every node id ever seen -> its type
        self.actor_nodes: set[str] = set()
        self.max_active: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.types.update(self.lc.node_types())
                for kind, count in self.lc.active().items():
                    self.max_active[kind] = max(count, self.max_active.get(kind, 0))
                self.actor_nodes.update(node for _, node in self.lc.actors(self.actor_part))
            except Exception:  # a poll racing a dying node; the next one sees it
                continue

    def actor_types(self) -> set[str]:
        return {self.types.get(n, f"unknown:{n}") for n in self.actor_nodes}


class Driver:
    """A scotd CLI driver joined to the local cluster (as under ``ray job submit``), output to a file."""

    def __init__(self, lc: LocalCluster, s3: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        env = head_env({**s3, "RAY_ADDRESS": lc.address})
        with log.open("w") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "scotd", *args], env=env, stdout=f, stderr=f)

    def running(self) -> bool:
        """True while it runs; its output in the failure when it stopped with an error."""
        code = self.proc.poll()
        assert code in (None, 0), f"the driver exited {code}:\n{self.log.read_text()[-5000:]}"
        return code is None

    def finish(self, timeout: float) -> None:
        self.proc.wait(timeout=timeout)
        self.running()


def _json(uri: str, name: str) -> dict[str, Any]:
    raw = storage.read_bytes(storage.location(uri), name)
    assert raw is not None, f"{uri}/{name} is missing"
    return dict(json.loads(raw))


def _registered_checkpoints(run: str) -> int:
    """Checkpoints Ray Train's controller has registered for ``run`` (its manager snapshot). A
    checkpoint's files can be in storage before the controller polls the report; a node killed in
    that gap restarts the group from step 0, so the test waits for the registration itself."""
    loc = storage.location(run)
    if not storage.exists(loc, "checkpoint_manager_snapshot.json"):
        return 0
    raw = storage.read_bytes(loc, "checkpoint_manager_snapshot.json")
    return len(json.loads(raw).get("checkpoint_results") or []) if raw else 0


def _kill_first_node_of(
    lc: LocalCluster, driver: Driver, actor_part: str, ready: Any, timeout_s: float
) -> tuple[str, float]:
    """Once ``ready()``, SIGKILL the raylet of a node that runs one of the actors; (node id, when)."""
    lc.wait_for("the stage to be under way", lambda: driver.running() and ready(), timeout_s)
    nodes = lc.wait_for(f"a live {actor_part} actor", lambda: [n for _, n in lc.actors(actor_part)], 60)
    lc.kill_node(nodes[0])
    return nodes[0], time.monotonic()


def _settled(count: Any, quiet_s: float = 3.0, timeout_s: float = 60.0) -> int:
    """``count()`` once it has not changed for ``quiet_s`` (bounded)."""
    last, since, deadline = count(), time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.5)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
    return int(last)


def _scaled_down(lc: LocalCluster, kind: str) -> float:
    start = time.monotonic()
    lc.wait_for(f"idle {kind} nodes removed", lambda: lc.active().get(kind, 0) == 0 or None, 120)
    return time.monotonic() - start


def test_teacher_job_survives_a_lost_sampler_node_and_a_killed_driver_paying_once(
    cluster: tuple[LocalCluster, dict[str, str]], on_s3: dict[str, str]
) -> None:
    """``ray job submit`` of the teacher stage: sampler nodes come up for it (no GPU node), a
    sampler node is lost mid-stage (the stage goes on), then the driver itself is SIGKILLed; the
    same job submitted again resumes from the ledger in S3. Every answer is paid once."""
    from ray.job_submission import JobSubmissionClient

    from tests.helpers.ray_jobs import logs, submit, wait

    lc, _ = cluster
    limit, out = 80, f"s3://{BUCKET}/teacher"
    with TeacherSimProcess(["--latency-base-ms", "300", "--rpm", "300", "--window-s", "5"]) as sim:
        args = [
            "--limit", str(limit), "--n", "2", "--out", out, "--teacher.base-url", sim.base_url,
            "--pool.num-samplers", "2", "--pool.resources", "{sampler: 1}", "--progress", "false",
        ]  # fmt: skip
        ledger = Ledger(f"{out}/ledger")
        with Watcher(lc, "TeacherSampler") as seen, Watcher(lc, "RateLimiterActor") as limiters:
            started = time.monotonic()
            first = submit(lc.head, "jobs/sample.py", *args)
            lc.wait_for("a sampler node", lambda: lc.active().get(SAMPLER), 120)
            scale_up_s = time.monotonic() - started
            lc.wait_for("the stage under way", lambda: len(ledger.keys()) >= limit // 5, 180)
            killed = lc.wait_for("a live sampler", lambda: [n for _, n in lc.actors("TeacherSampler")], 60)[0]
            lc.kill_node(killed)
            at_node_kill, bought_at_node_kill = time.monotonic(), len(ledger.keys())
            lc.wait_for(
                "answers after the node loss", lambda: len(ledger.keys()) >= bought_at_node_kill + 10, 180
            )
            went_on_s = time.monotonic() - at_node_kill
            driver = JobSubmissionClient(lc.dashboard_url).get_job_info(first).driver_info
            assert driver is not None
            os.kill(int(driver.pid), signal.SIGKILL)
            status, _ = wait(lc.head, first, 60)
            # The dead driver's samplers may still record answers already in flight: count once still.
            bought_at_driver_kill = _settled(lambda: len(ledger.keys()))
            second = submit(lc.head, "jobs/sample.py", *args)
            status2, took = wait(lc.head, second, 300)
            text = logs(lc.head, second)
        stats = sim.stats()
    assert status == "FAILED" and status2 == "SUCCEEDED", (status, status2, text[-3000:])
    assert bought_at_node_kill < bought_at_driver_kill < limit, "both losses must land mid-stage"
    assert f"{bought_at_driver_kill} already in the ledger" in text, text[-3000:]
    assert _json(out, "summary.json")["complete"]
    assert stats["repeated_paid_requests"] == 0 and stats["paid_requests"] == limit, stats
    assert TRAINER not in seen.max_active, "no GPU node is started for the teacher stage"
    assert seen.actor_types() == {SAMPLER}, f"samplers ran on {seen.actor_types()}"
    # The run's one limiter stays with the driver, on the head: a lost sampler node never takes it.
    assert limiters.actor_types() == {HEAD_TYPE}, f"the limiter ran on {limiters.actor_types()}"
    assert seen.types.get(killed) == SAMPLER
    down_s = _scaled_down(lc, SAMPLER)
    print(
        f"\nteacher job: sampler node up {scale_up_s:.1f} s after submit; node lost at {bought_at_node_kill}/{limit} "
        f"answers, 10 more answers {went_on_s:.1f} s later; driver killed at {bought_at_driver_kill}/{limit}, the "
        f"resubmitted job finished in {took:.1f} s; idle samplers gone {down_s:.1f} s after"
    )


def test_distill_on_trainer_nodes_restarts_from_the_s3_checkpoint_after_a_lost_node(
    cluster: tuple[LocalCluster, dict[str, str]], on_s3: dict[str, str], tmp_path: Path
) -> None:
    lc, s3 = cluster
    corpus = f"s3://{BUCKET}/corpus"
    storage.upload_dir(
        str(write_demo_corpus(tmp_path / "corpus", questions=48, per_question=4)), storage.location(corpus)
    )
    steps, out, name = 60, f"s3://{BUCKET}/distill", "lost-node"
    run = f"{out}/{name}"
    with Watcher(lc, "RayTrainWorker") as seen:
        driver = Driver(
            lc, s3, tmp_path / "distill.log", "distill", "--corpus", corpus, "--student", "tiny", "--max-steps", str(steps),
            "--batch-size", "8", "--warmup-steps", "5", "--num-workers", "2", "--cpus-per-worker", "1",
            "--resources-per-worker", "{accelerator: 1}", "--checkpoint-every-steps", "5",
            "--eval-every-steps", "1000", "--log-every-steps", "5", "--out", out, "--name", name,
        )  # fmt: skip
        checkpointed = lambda: _registered_checkpoints(run) or None  # noqa: E731
        killed, at = _kill_first_node_of(lc, driver, "RayTrainWorker", checkpointed, 300)
        back = lc.wait_for(
            "the worker group back at full size",
            lambda: len([n for _, n in lc.actors("RayTrainWorker") if n != killed]) == 2 or None,
            240,
        )
        recovered_s = time.monotonic() - at
        driver.finish(400)
    summary = _json(run, "summary.json")
    assert back
    assert summary["final_step"] == steps, summary
    assert summary["restarts_after_failure"] >= 1 and summary["resumed_at_steps"], summary
    assert all(0 < s < steps and s % 5 == 0 for s in summary["resumed_at_steps"]), summary
    assert seen.actor_types() == {TRAINER}, f"train workers ran on {seen.actor_types()}"
    assert seen.types.get(killed) == TRAINER
    # The student is scored on the same node type: eval engines ask for the accelerator too.
    with Watcher(lc, "StudentGenerator") as engines:
        Driver(
            lc, s3, tmp_path / "eval.log", "eval", "--model", f"{run}/export", "--task", "synthetic",
            "--split", "test", "--limit", "12", "--engine", "hf", "--votes", "2", "--ks", "[1, 2]",
            "--resources-per-engine", "{accelerator: 1}", "--out", f"s3://{BUCKET}/eval", "--progress", "false",
        ).finish(300)  # fmt: skip
    assert engines.actor_types() == {TRAINER}, f"eval engines ran on {engines.actor_types()}"
    print(
        f"\ndistill: trainer node lost; group back on 2 trainer nodes {recovered_s:.1f} s after the kill, "
        f"resumed at step {summary['resumed_at_steps']}, finished at step {summary['final_step']}; "
        "eval engines on gpu_worker"
    )


SERVE_DRIVER = """
import sys, time, ray
from ray import serve
from scotd.serve.app import build_app
from scotd.serve.config import ServeConfig
ray.init(address=sys.argv[1], log_to_driver=False)
# One proxy, on the head (local nodes share 127.0.0.1); the ingress pinned to the head by resource:
# the head is never lost without the cluster, the model replicas (on accelerator nodes) can be.
serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": int(sys.argv[2])})
cfg = ServeConfig.model_validate({"model": sys.argv[3], "engine": "hf", "max_new_tokens": 12, "threads": 1})
serve.run(build_app(
    cfg,
    {"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.5, "resources": {"accelerator": 1}}},
    {"ray_actor_options": {"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}}},
), name="scotd", route_prefix="/")
print("serving", flush=True)
while True:
    time.sleep(60)
"""


def test_serve_keeps_answering_when_a_replica_node_is_lost(
    cluster: tuple[LocalCluster, dict[str, str]], on_s3: dict[str, str], tmp_path: Path
) -> None:
    from scotd.httpjson import http_json
    from scotd.localcluster.head import free_port
    from tests.helpers.tiny_models import random_student

    lc, s3 = cluster
    model = f"s3://{BUCKET}/serve-model"
    storage.upload_dir(str(random_student(tmp_path / "student")), storage.location(model))
    port, script = free_port(), tmp_path / "serve_driver.py"
    script.write_text(SERVE_DRIVER)
    env = head_env({**s3, "SCOTD_CACHE_DIR": str(tmp_path / "cache")})
    log = tmp_path / "serve.log"
    with log.open("w") as f:
        proc = subprocess.Popen(
            [sys.executable, str(script), lc.address, str(port), model], env=env, stdout=f, stderr=f
        )
    url = f"http://127.0.0.1:{port}/v1/answer"
    body = {"question": "Tom has 3 apples. He eats 1. How many are left?", "choices": ["2", "3"], "votes": 2}
    statuses: list[tuple[float, int]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                statuses.append((time.monotonic(), http_json("POST", url, body, timeout=60).status))
            except OSError:
                statuses.append((time.monotonic(), -1))

    try:
        replicas = "ServeReplica:scotd:StudentModel"
        lc.wait_for(
            "two model replicas answering",
            lambda: (
                (proc.poll() is None or pytest.fail(log.read_text()[-4000:]))
                and len(lc.actors(replicas)) == 2
                and _answers(url, body)
            ),
            300,
            every_s=2,
        )
        with Watcher(lc, replicas) as seen:
            threads = [threading.Thread(target=client, daemon=True) for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(5)
            killed = lc.actors(replicas)[0][1]
            lc.kill_node(killed)
            at = time.monotonic()
            lc.wait_for(
                "two model replicas again",
                lambda: len([n for _, n in lc.actors(replicas) if n != killed]) == 2 and _answers(url, body),
                240,
                every_s=1,
            )
            recovered_s = time.monotonic() - at
            time.sleep(3)
            stop.set()
            for t in threads:
                t.join(timeout=90)
    finally:
        stop.set()
        proc.kill()
        proc.wait(timeout=30)
    after = [s for t, s in statuses if t >= at]
    assert after and sum(s == 200 for s in after) >= len(after) // 2, _counts(after)
    assert all(s == 200 for _, s in statuses), _counts([s for _, s in statuses])
    assert seen.actor_types() == {TRAINER}, f"model replicas ran on {seen.actor_types()}"
    assert seen.types.get(killed) == TRAINER
    print(
        f"\nserve: replica node lost; {len(after)} requests answered after the kill, all 200; "
        f"2 replicas again {recovered_s:.1f} s after the kill"
    )


def _answers(url: str, body: dict[str, Any]) -> bool:
    from scotd.httpjson import http_json

    try:
        return http_json("POST", url, body, timeout=60).status == 200
    except OSError:
        return False


def _counts(statuses: list[int]) -> str:
    from collections import Counter

    return f"statuses: {dict(Counter(statuses))}"
