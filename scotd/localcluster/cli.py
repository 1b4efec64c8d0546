"""``scotd cluster-local up|status|down``: the cluster path on one machine.

``up`` starts a head whose autoscaler launches local nodes of ``cluster/aws.yaml``'s types as work
asks for them (and removes them when idle), optionally with a local S3 server for outputs; it
prints what to export for ``ray job submit``. The state lives in a small JSON file so ``status`` and
``down`` find the cluster again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from scotd.localcluster.spec import LocalScale, SpecError

STATE = (
    Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "scotd" / "cluster-local.json"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="start the head + autoscaler (nodes come with the work)")
    up.add_argument(
        "--launcher", default=None, help="cluster launcher YAML to mirror (default: cluster/aws.yaml)"
    )
    up.add_argument("--cpus-per-node", type=float, default=2, help="logical CPUs of each local node")
    up.add_argument(
        "--idle-timeout-minutes", type=float, default=1.0, help="idle nodes go after this (real: 5)"
    )
    up.add_argument(
        "--s3", action="store_true", help="also run a local S3 server (bucket 'scotd') for outputs"
    )
    for name in ("status", "down"):
        sub.add_parser(name, help=f"{name} the cluster `up` started")
    for p in sub.choices.values():
        p.add_argument("--state", type=Path, default=STATE, help=f"state file (default {STATE})")


def run(args: argparse.Namespace) -> int:
    from scotd.localcluster import cluster

    if args.action == "up":
        return _up(args)
    if not args.state.exists():
        print(
            f"no local cluster recorded in {args.state}: start one with `scotd cluster-local up`",
            file=sys.stderr,
        )
        return 2
    lc = cluster.load(args.state)
    if args.action == "down":
        lc.down()
        extra = json.loads(args.state.read_text()).get("s3_pid")
        if extra:
            _stop(int(extra))
        args.state.unlink()
        print("local cluster stopped")
        return 0
    try:
        report = lc.report()
    except Exception as e:
        print(
            f"the local cluster at {lc.address} does not answer ({type(e).__name__}); `scotd cluster-local down`"
        )
        return 1
    print(f"head {lc.address}  job API {lc.dashboard_url}")
    print(f"active:  {report.get('active_nodes') or {}}")
    print(f"pending: {report.get('pending_launches') or {}} {report.get('pending_nodes') or []}")
    for node, kind in sorted((report.get("node_type_mapping") or {}).items(), key=lambda x: x[1]):
        print(f"  {kind:18s} {node}")
    return 0


def _up(args: argparse.Namespace) -> int:
    from scotd.localcluster import cluster
    from scotd.localcluster.head import free_port

    if args.state.exists():
        print(
            f"a local cluster is recorded in {args.state}: `scotd cluster-local down` first", file=sys.stderr
        )
        return 2
    env: dict[str, str] = {}
    s3_pid = None
    if args.s3:
        from scotd.localcluster.s3 import s3_env

        port = free_port()
        args.state.parent.mkdir(parents=True, exist_ok=True)
        log = open(args.state.with_suffix(".s3.log"), "ab")  # noqa: SIM115 (the detached server keeps it)
        proc = subprocess.Popen(
            [sys.executable, "-m", "scotd.localcluster.s3", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        s3_pid = proc.pid
        env = s3_env(f"http://127.0.0.1:{port}")
        time.sleep(2)
    scale = LocalScale(max_cpus_per_node=args.cpus_per_node, idle_timeout_minutes=args.idle_timeout_minutes)
    try:
        lc = cluster.up(args.launcher or cluster.DEFAULT_LAUNCHER, scale, env=env)
    except SpecError as e:
        print(f"cannot mirror the launcher YAML: {e}", file=sys.stderr)
        if s3_pid:
            _stop(s3_pid)
        return 2
    cluster.save(lc, args.state)
    if s3_pid:
        state = json.loads(args.state.read_text())
        args.state.write_text(json.dumps({**state, "s3_pid": s3_pid}, indent=1))
    print(
        f"local autoscaling cluster up: head {lc.address}, node types from {args.launcher or 'cluster/aws.yaml'}"
    )
    print(f"autoscaling config: {lc.config_path}   head log: {lc.log_path}")
    print("submit jobs with:")
    print(f"  export RAY_ADDRESS={lc.dashboard_url} RAY_AUTH_MODE=disabled")
    for k, v in env.items():
        print(f"  export {k}={v}")
    print(
        "  ray job submit --working-dir . -- python jobs/pipeline.py --config jobs/configs/cluster_local.yaml"
        + (" --out s3://scotd/pipeline" if env else "")
    )
    return 0


def _stop(pid: int) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
