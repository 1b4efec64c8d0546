"""Run ``scotd teacher-sim`` as a subprocess on a free local port (tests, demos, pipelines).

    with TeacherSimProcess(["--rpm", "600"]) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="x")
        ...
        sim.stats()["paid_requests"]

Every wait is bounded: start-up by ``timeout_s``, shutdown by terminate-then-kill.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Any

from scotd.httpjson import http_json
from scotd.teacher.sim.cli import LISTENING

STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05


class TeacherSimError(RuntimeError):
    """The server did not come up; the message carries its output."""


class TeacherSimProcess:
    """Context manager owning one ``python -m scotd teacher-sim --port 0 <args>`` process.

    ``host``: the address to bind (127.0.0.1; a node's cluster IP when other nodes must reach it).
    ``env`` entries are added to (not replacing) this process's environment. The server's stdout
    and stderr are captured (``output()``), never inherited, so tests can check what it printed.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        timeout_s: float = 30.0,
        env: Mapping[str, str] | None = None,
        verbose: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.args = list(args)
        self.host = host
        self.timeout_s = timeout_s
        self.env = dict(env or {})
        self.verbose = verbose
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> TeacherSimProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Launch, read the listening line, wait until ``GET /v1/models`` answers; all bounded."""
        cmd = [sys.executable, "-m", "scotd", *(["-v"] if self.verbose else []), "teacher-sim"]
        cmd += ["--host", self.host, "--port", "0", *self.args]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **self.env},
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream in (self.proc.stdout, self.proc.stderr):
            thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + self.timeout_s
        try:
            self._wait_for_url(deadline)
            self._wait_until_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate, then kill after ``STOP_TIMEOUT_S``; idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        for thread in self._threads:
            thread.join(timeout=STOP_TIMEOUT_S)

    # --- helpers ------------------------------------------------------------------------------

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self._lines.append(line)

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr interleaved by arrival)."""
        with self._lock:
            return "".join(self._lines)

    def _fail(self, why: str) -> TeacherSimError:
        return TeacherSimError(f"teacher-sim {why}; its output:\n{self.output()}")

    def _wait_for_url(self, deadline: float) -> None:
        assert self.proc is not None
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith(LISTENING):
                    self.base_url = line.removeprefix(LISTENING).strip()
                    return
            if self.proc.poll() is not None:
                raise self._fail(f"exited with status {self.proc.returncode} before listening")
            time.sleep(_POLL_S)
        raise self._fail(f"printed no '{LISTENING}' line within {self.timeout_s:g}s")

    def _wait_until_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                status = http_json("GET", f"{self.base_url}/models", timeout=2).status
            except OSError:  # not listening yet
                status = None
            if status is not None and (status < 400 or status == 401):  # 401: auth on, up all the same
                return
            time.sleep(_POLL_S)
        raise self._fail(f"did not answer GET /v1/models within {self.timeout_s:g}s")

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (where ``/stats`` lives)."""
        return self.base_url.removesuffix("/v1")

    def stats(self) -> dict[str, Any]:
        """The server's ``/stats``; an ``OSError`` when it cannot be had."""
        reply = http_json("GET", f"{self.root_url}/stats", timeout=5)
        if reply.status != 200 or not isinstance(reply.body, dict):
            raise OSError(f"GET /stats answered {reply.status}: {reply.text[:200]}")
        return reply.body

    def reset_stats(self) -> None:
        reply = http_json("POST", f"{self.root_url}/stats/reset", data=b"", timeout=5)
        if reply.status != 200:
            raise OSError(f"POST /stats/reset answered {reply.status}: {reply.text[:200]}")
