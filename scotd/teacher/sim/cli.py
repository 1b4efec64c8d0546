"""``scotd teacher-sim``: run the embedded OpenAI-compatible teacher until SIGTERM / SIGINT.

On start it prints exactly one line to stdout, ``teacher-sim listening on http://HOST:PORT/v1``,
so callers using ``--port 0`` can read the chosen port (``process.TeacherSimProcess`` does).
Exit status: 0 after a clean stop, 2 for a configuration error (bad flag, unset key variable,
``--backend replay`` without the recorded data, a port that cannot be bound).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from aiohttp import web

from scotd.config import ConfigError, add_config_arguments, config_from_args
from scotd.paths import resolve_data_dir
from scotd.teacher.sim.config import TeacherSimConfig
from scotd.teacher.sim.replay import ReplayStore, ReplayUnavailable
from scotd.teacher.sim.server import TeacherSim

log = logging.getLogger(__name__)

LISTENING = "teacher-sim listening on"
# In-flight requests (a hanging one sleeps up to hang_s) get this long to finish on shutdown.
SHUTDOWN_TIMEOUT_S = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, TeacherSimConfig)


def build(config: TeacherSimConfig) -> TeacherSim:
    """The server for ``config``; raises ``ConfigError`` saying what to change."""
    api_key = None
    if config.api_key_env:
        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            raise ConfigError(
                f"api_key_env names ${config.api_key_env}, which is not set; export it or drop api_key_env"
            )
    replay = ReplayStore(resolve_data_dir(config.data_dir))
    if config.backend == "replay":
        try:
            replay.check()
        except ReplayUnavailable as e:
            raise ConfigError(f"--backend replay: {e}") from None
    return TeacherSim(config, replay, api_key)


async def serve(sim: TeacherSim) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting and give in-flight requests a moment."""
    runner = web.AppRunner(sim.app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, sim.config.host, sim.config.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"{LISTENING} http://{host}:{port}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("teacher-sim stopping: %s", sim.stats.summary())
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    try:
        sim = build(config_from_args(TeacherSimConfig, args))
    except ConfigError as e:
        print(f"teacher-sim: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(sim))
    except OSError as e:  # the port is taken, or the host is not an address of this machine
        print(f"teacher-sim: cannot listen on {sim.config.host}:{sim.config.port}: {e}", file=sys.stderr)
        return 2
    return 0
