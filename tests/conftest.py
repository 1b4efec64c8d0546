"""Shared test setup: keep everything on 127.0.0.1 and offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Hub lookups must fail fast and locally: point the hub at a closed loopback port.
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# Serve replicas read their bearer token from their own environment, as on a cluster (a mounted
# Secret), and Ray's proxy bounds request bodies through a callback named in the environment (as
# `scotd serve` sets it). Both must be in the environment the session's Ray head starts with.
SERVE_TEST_TOKEN_ENV = "SCOTD_TEST_SERVE_TOKEN"
SERVE_TEST_TOKEN = "test-serve-token-5f2c9e"
os.environ.setdefault(SERVE_TEST_TOKEN_ENV, SERVE_TEST_TOKEN)
os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", "serve.proxy_limits:middlewares")

REPO_ROOT = Path(__file__).resolve().parent.parent
# A slice of the real datasets, inside the repository (tests/fixtures/data/SOURCES.md).
FIXTURE_DATA = REPO_ROOT / "tests" / "fixtures" / "data"


def _full_data_dir() -> Path | None:
    """A full copy of the datasets: ``$SCOTD_DATA_DIR`` as the caller set it, else ``../shared/data``."""
    for candidate in (os.environ.get("SCOTD_DATA_DIR"), REPO_ROOT.parent / "shared" / "data"):
        if not candidate or Path(candidate).resolve() == FIXTURE_DATA:
            continue
        if (Path(candidate) / "csqa" / "train_rand_split.jsonl").is_file():
            return Path(candidate)
    return None


FULL_DATA = _full_data_dir()
# Every test — and every CLI, job and Ray worker it starts — reads the in-repo slice unless it
# asks for ``full_data``: results never depend on what happens to lie beside the checkout.
os.environ["SCOTD_DATA_DIR"] = str(FIXTURE_DATA)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The in-repo slice of CSQA, OBQA and the PaLM chains (same layout as a full data directory)."""
    return FIXTURE_DATA


@pytest.fixture(scope="session")
def full_data() -> Path:
    """The full datasets; tests that need whole splits skip without them, saying how to get them."""
    if FULL_DATA is None:
        pytest.skip(
            "needs the full datasets: set SCOTD_DATA_DIR to a data directory "
            "(`scotd data fetch csqa --data-dir DIR` on a machine with internet) or place one at ../shared/data"
        )
    return FULL_DATA


@pytest.fixture(scope="session")
def ray_head():  # type: ignore[no-untyped-def]
    """One local Ray head for the whole session, on 127.0.0.1, oversubscribed (8 logical CPUs), with
    the job API (``ray job submit`` tests use it too: one cluster start, not two).

    ``ray start --block`` runs in its own process group, so teardown stops exactly this cluster
    (``ray stop`` would stop every Ray cluster on the machine). Drivers in subprocesses join it
    through ``RAY_ADDRESS``; the test process joins with ``ray.init(address=...)``.
    """
    from tests.helpers.ray_head import local_head

    with local_head(num_cpus=8, dashboard=True) as head:
        os.environ["RAY_ADDRESS"] = head.address
        try:
            yield head
        finally:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            os.environ.pop("RAY_ADDRESS", None)


@pytest.fixture(scope="session")
def ray_address(ray_head) -> str:  # type: ignore[no-untyped-def]
    """The session head's GCS address."""
    return str(ray_head.address)


@pytest.fixture(scope="session")
def ray_session(ray_address: str):  # type: ignore[no-untyped-def]
    """The test process connected to the session's Ray cluster."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_address, log_to_driver=False)
    yield ray_address


@pytest.fixture(scope="session")
def always_a_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny student trained to answer "(a)" whatever the question (≈10 s to build)."""
    from tests.helpers.tiny_models import always_a_student

    return always_a_student(tmp_path_factory.mktemp("always_a"), steps=120)
