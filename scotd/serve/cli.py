"""``scotd serve``: run the voting student on Ray Serve until interrupted."""

from __future__ import annotations

import argparse
import os
import sys
import time

from scotd.config import ConfigError, add_config_arguments, config_from_args
from scotd.serve.config import ServeConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicas", default="1", help="model replicas: N, or MIN-MAX to autoscale")
    add_config_arguments(parser, ServeConfig)


def _replica_options(spec: str) -> dict[str, object]:
    if "-" in spec:
        lo, hi = (int(x) for x in spec.split("-", 1))
        return {"autoscaling_config": {"min_replicas": lo, "max_replicas": hi, "target_ongoing_requests": 4}}
    return {"num_replicas": int(spec)}


def run(args: argparse.Namespace) -> int:
    """Validate everything a replica will need (config, task, engine, model, token), then serve."""
    try:
        cfg = config_from_args(ServeConfig, args)
        options = {**_replica_options(args.replicas), "ray_actor_options": {"num_cpus": 1}}
        from scotd.serve.model_files import check_model

        check_model(cfg.model, cfg.engine)
        if cfg.auth_token_env and not os.environ.get(cfg.auth_token_env):
            raise ConfigError(
                f"auth_token_env names ${cfg.auth_token_env}, which is not set: export it (the replicas "
                "read it from their environment) or drop auth_token_env"
            )
    except (ConfigError, ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from ray import serve

    from scotd.ray_runtime import init_ray
    from scotd.serve.app import build_app
    from scotd.serve.proxy_limits import proxy_env

    # A cluster started here inherits this environment: its proxy bounds request bodies (and the
    # replicas find the token). A joined cluster ($RAY_ADDRESS) must have set both on its nodes.
    for key, value in proxy_env().items():
        os.environ.setdefault(key, value)
    init_ray()
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(build_app(cfg, options), name="scotd", route_prefix="/")
    print(
        f"scotd serving {cfg.model} at http://{cfg.host}:{cfg.port} (/v1/answer, /v1/completions, /v1/chat/completions)"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0
