"""serve/config.yaml is a valid Serve config whose app args are a valid ServeConfig."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from scotd.serving import ServeConfig

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
