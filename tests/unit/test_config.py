"""Typed configs: YAML + flags precedence, unknown keys named, secrets refused, resolved copy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from scotd.config import (
    ConfigError,
    StageConfig,
    add_config_arguments,
    config_from_args,
    load_config,
    write_resolved,
)


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"


class DemoConfig(StageConfig):
    task: str = "synthetic"
    n: int = Field(30, ge=1, description="samples per question")
    temperature: float = 1.0
    api: Literal["chat", "completions"] = "completions"
    stop: str | None = "\n\n"
    ks: list[int] = Field(default_factory=lambda: [1, 3, 5])
    dry_run: bool = False
    teacher: Endpoint = Endpoint()


def _parse(argv: list[str]) -> DemoConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, DemoConfig)
    return config_from_args(DemoConfig, parser.parse_args(argv))


def test_defaults_yaml_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("n: 5\ntemperature: 0.7\nteacher:\n  base_url: http://127.0.0.1:9/v1\n")
    cfg = _parse(["--config", str(path), "--temperature", "0.3", "--ks", "[1, 10]", "--dry-run", "true"])
    assert (cfg.n, cfg.temperature, cfg.ks, cfg.dry_run) == (5, 0.3, [1, 10], True)
    assert cfg.teacher.base_url == "http://127.0.0.1:9/v1"
    assert _parse(["--teacher.api-key-env", "MY_KEY"]).teacher.api_key_env == "MY_KEY"
    assert _parse([]) == DemoConfig()


def test_string_flags_stay_strings() -> None:
    assert _parse(["--task", "123"]).task == "123"
    assert _parse(["--stop", "null"]).stop is None


def test_unknown_key_is_named_with_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("temprature: 0.5\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'temprature' \(did you mean 'temperature'\?\)"
    ) as err:
        load_config(DemoConfig, path)
    assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match=r"unknown key 'teacher.base'"):
        load_config(DemoConfig, overrides={"teacher": {"base": "x"}})


def test_bad_values_name_the_field_without_echoing_them() -> None:
    with pytest.raises(ConfigError, match=r"n: Input should be greater than or equal to 1"):
        load_config(DemoConfig, overrides={"n": 0})
    with pytest.raises(ConfigError, match=r"api: Input should be 'chat' or 'completions'"):
        load_config(DemoConfig, overrides={"api": "grpc"})


def test_inline_secrets_are_refused_and_never_echoed() -> None:
    secret = "sk-proj-abcdefghijklmnop1234"
    with pytest.raises(ConfigError) as err:
        load_config(DemoConfig, overrides={"task": secret})
    assert "environment variable" in str(err.value)
    assert secret not in str(err.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(DemoConfig, tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(DemoConfig, tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("n: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(DemoConfig, tmp_path / "broken.yaml")


def test_resolved_config_roundtrips(tmp_path: Path) -> None:
    cfg = load_config(DemoConfig, overrides={"n": 7, "teacher": {"api_key_env": "TEACHER_KEY"}})
    path = Path(write_resolved(cfg, tmp_path / "out"))
    assert path.read_text().startswith("# DemoConfig, resolved")
    assert load_config(DemoConfig, path) == cfg
    assert yaml.safe_load(path.read_text())["teacher"]["api_key_env"] == "TEACHER_KEY"
