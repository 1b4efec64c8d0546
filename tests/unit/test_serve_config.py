"""Shipped Serve configs are valid and bounded; a bad config refuses to start; request checks (pure)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from scotd.eval.config import EvalConfig
from scotd.paths import model_display_name
from scotd.serve.api import AnswerRequest, prompt_problem
from scotd.serve.config import ServeConfig
from scotd.serve.proxy_limits import CALLBACK, CALLBACK_ENV

CONFIG = Path(__file__).resolve().parents[2] / "serve" / "config.yaml"


def test_serve_config_points_at_the_builder_with_valid_args() -> None:
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load(CONFIG.read_text())
    schema = (
        ServeDeploySchema.model_validate(raw)
        if hasattr(ServeDeploySchema, "model_validate")
        else ServeDeploySchema.parse_obj(raw)
    )
    (app,) = schema.applications
    module, attr = app.import_path.split(":")
    assert callable(getattr(importlib.import_module(module), attr))
    cfg = ServeConfig.model_validate(app.args)
    assert cfg.default_votes <= cfg.max_votes
    names = {d.name for d in app.deployments}
    assert names == {"StudentModel", "AnswerAPI"}
    scaling = next(d for d in app.deployments if d.name == "StudentModel").autoscaling_config
    assert scaling["min_replicas"] >= 1 and scaling["max_replicas"] > scaling["min_replicas"]


# --- every shipped Serve config: bounded queues on both deployments, the serve token on -----------

SHIPPED = {
    "serve/config.yaml": lambda raw: raw,
    "cluster/serve.yaml": lambda raw: raw,
    "cluster/kuberay/rayservice.yaml": lambda raw: yaml.safe_load(raw["spec"]["serveConfigV2"]),
}
REPO = CONFIG.parents[1]


@pytest.mark.parametrize("path", sorted(SHIPPED))
def test_shipped_configs_bound_both_queues_and_switch_auth_on(path: str) -> None:
    serve_config = SHIPPED[path](yaml.safe_load((REPO / path).read_text()))
    (app,) = serve_config["applications"]
    assert app["args"]["auth_token_env"] == "SCOTD_SERVE_TOKEN"
    for d in app["deployments"]:
        assert 0 < d["max_ongoing_requests"] < d["max_queued_requests"], d["name"]
        assert d["backpressure_config"] == {"status_code": 503, "retry_after_s": 1}, d["name"]


def test_rayservice_pods_carry_the_token_and_the_proxy_body_bound() -> None:
    spec = yaml.safe_load((REPO / "cluster/kuberay/rayservice.yaml").read_text())["spec"]["rayClusterConfig"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        (container,) = group["template"]["spec"]["containers"]
        env = {v["name"]: v for v in container["env"]}
        assert env["SCOTD_SERVE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "scotd-serve",
            "key": "token",
        }
        assert env[CALLBACK_ENV]["value"] == CALLBACK
    module, attr = CALLBACK.split(":")
    assert callable(getattr(importlib.import_module(module), attr))


# --- a bad config refuses to start, before any cluster exists ------------------------------------


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--task", "no-such-task"], "unknown task 'no-such-task'"),
        (["--model", "/no/such/export"], "not a model directory"),
        (["--auth-token-env", "SCOTD_UNSET_TEST_TOKEN"], "$SCOTD_UNSET_TEST_TOKEN, which is not set"),
        (["--max-body-bytes", str(4 << 20)], "max_body_bytes"),
    ],
)
def test_scotd_serve_refuses_a_bad_config(
    flags: list[str],
    needle: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scotd.cli import main
    from tests.helpers.tiny_models import random_student

    monkeypatch.delenv("SCOTD_UNSET_TEST_TOKEN", raising=False)
    model = random_student(tmp_path / "m") if "--model" not in flags else None
    argv = ["serve", *(["--model", str(model)] if model else []), *flags]
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


# --- requests: labels, greedy, prompt length (pure) ------------------------------------------------


def test_auto_labels_never_collide_and_labels_are_checked() -> None:
    req = AnswerRequest.model_validate({"question": "q", "choices": ["x", {"label": "A", "text": "y"}, "z"]})
    assert req.labels() == ["b", "A", "c"]
    assert [label for label, _ in req.example("synthetic").choices] == ["b", "A", "c"]
    for bad in (
        [{"label": "a", "text": "x"}, {"label": "A", "text": "y"}],
        [{"label": "a)", "text": "x"}, "y"],
    ):
        with pytest.raises(ValidationError):
            AnswerRequest.model_validate({"question": "q", "choices": bad})


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [(0, (1, 0.0, False)), (1e-40, (1, 0.0, False)), (0.5, (7, 0.5, False)), (None, (7, 0.7, False))],
)
def test_near_zero_temperature_is_one_greedy_vote(
    temperature: float | None, expected: tuple[int, float, bool]
) -> None:
    req = AnswerRequest.model_validate(
        {"question": "q", "choices": ["x", "y"], "votes": 7, "temperature": temperature}
    )
    assert req.sampling(ServeConfig()) == expected


def test_auto_votes_are_capped_and_checked() -> None:
    cfg = ServeConfig(max_votes=16)
    auto = AnswerRequest.model_validate({"question": "q", "choices": ["x", "y"], "votes": "auto"})
    assert auto.sampling(cfg) == (16, 0.7, True) and auto.validate_limits(cfg) == []
    capped = AnswerRequest.model_validate(
        {"question": "q", "choices": ["x", "y"], "votes": "auto", "max_votes": 8}
    )
    assert capped.sampling(cfg) == (8, 0.7, True)
    too_many = AnswerRequest.model_validate(
        {"question": "q", "choices": ["x", "y"], "votes": "auto", "max_votes": 17}
    )
    assert [k for k, _ in too_many.validate_limits(cfg)] == ["max_votes"]
    fixed = AnswerRequest.model_validate({"question": "q", "choices": ["x", "y"], "votes": 3, "max_votes": 8})
    assert [k for k, _ in fixed.validate_limits(cfg)] == ["max_votes"]
    with pytest.raises(ValidationError):
        AnswerRequest.model_validate({"question": "q", "choices": ["x", "y"], "votes": "all"})


def test_prompt_problem() -> None:
    assert prompt_problem(100, max_prompt_tokens=512, context_length=1024) is None
    assert "at most 512" in str(prompt_problem(513, max_prompt_tokens=512, context_length=1024))
    assert "context is 256" in str(prompt_problem(256, max_prompt_tokens=512, context_length=256))


# --- the model's name: one rule for eval reports and the served API ---------------------------------


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("outputs/distill/run-x/export", "run-x"),  # a distill export: its run
        ("outputs/distill/run-x/export/", "run-x"),
        ("s3://bucket/distill/run-y/export", "run-y"),
        ("outputs/students/tiny", "tiny"),
        ("/abs/models/label-export", "label-export"),  # only a whole `export` component is skipped
        ("google/t5-v1_1-base", "t5-v1_1-base"),
        ("gpt2", "gpt2"),
        ("export", "export"),
    ],
)
def test_eval_and_serve_name_a_model_alike(model: str, name: str) -> None:
    assert model_display_name(model) == name
    assert EvalConfig(model=model).display_name() == ServeConfig(model=model).display_name() == name
    assert EvalConfig(model=model, name="mine").display_name() == "mine"
    assert ServeConfig(model=model, name="mine").display_name() == "mine"
