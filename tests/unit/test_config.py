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


def test_flag_help_shows_the_default_the_config_holds() -> None:
    """A section's default instance wins over its class's defaults (DistillConfig's tiny: is bpe)."""
    from scotd.distill.config import DistillConfig

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, DistillConfig)
    helps = {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}
    assert helps["--tiny.tokenizer"].endswith("(default: 'bpe')")
    assert helps["--tiny.num-layers"].endswith("(default: 4)")
    assert DistillConfig().tiny.tokenizer == "bpe"


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


class Deep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    teacher: Endpoint = Endpoint()


class FreeformConfig(StageConfig):
    nested: Deep = Deep()
    extra: dict[str, object] = Field(default_factory=dict)


KEYS = [
    "sk-proj-abcdefghijklmnop1234",
    "sk-ant-api03-abcdefghijklmnop",
    "hf_abcdefghijklmnopqrstu",
    "Bearer abcdefgh12345678",
    "AKIAABCDEFGHIJKLMNOP",
    "https://user:hunter2hunter2@example.com/v1",
    "prefix-then sk-abcdefghijklmnop",
]


@pytest.mark.parametrize("secret", KEYS)
def test_key_shaped_values_are_refused_at_any_depth_and_never_echoed(secret: str) -> None:
    for overrides, where in (
        ({"teacher": {"api_key_env": secret}}, "teacher.api_key_env"),  # the case
        ({"nested": {"teacher": {"base_url": secret}}}, "nested.teacher.base_url"),
        ({"extra": {"a": [{"b": secret}]}}, "extra.a[0].b"),
        ({"extra": {secret: 1}}, "a key under extra"),
    ):
        cls = DemoConfig if "teacher" in overrides else FreeformConfig
        with pytest.raises(ConfigError) as err:
            load_config(cls, overrides=overrides)
        assert where in str(err.value) and "secret" in str(err.value)
        assert secret not in str(err.value)


def test_ordinary_values_that_merely_resemble_keys_pass() -> None:
    for value in ("OPENAI_API_KEY", "sk-learn", "task-sk-1", "https://example.com/v1", "bearer bonds"):
        load_config(FreeformConfig, overrides={"extra": {"v": value}})


def test_an_api_key_pasted_into_a_flag_is_not_written_anywhere(tmp_path: Path) -> None:
    from scotd.cli import main

    secret = "sk-abcdefghijklmnopqrstuv"
    out = tmp_path / "run"
    assert main(["sample", "--dry-run", "true", "--teacher.api-key-env", secret, "--out", str(out)]) == 2
    assert not out.exists()  # no config.yaml (nor anything else) holds it


def test_pathological_yaml_fails_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("extra:\n  x: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(FreeformConfig, deep)
    parseable = tmp_path / "parseable.yaml"
    parseable.write_text("extra: " + "{a: " * 200 + "1" + "}" * 200 + "\n")
    with pytest.raises(ConfigError, match=r"extra\.a\.a.* nests more than 32 levels"):
        load_config(FreeformConfig, parseable)
    bomb = tmp_path / "bomb.yaml"
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    bomb.write_text("extra:\n" + "".join(f"  {line}\n" for line in levels))
    with pytest.raises(ConfigError, match="more than 100,000 values"):
        load_config(FreeformConfig, bomb)
    loop = tmp_path / "loop.yaml"
    loop.write_text("extra:\n  a: &a [*a]\n")
    with pytest.raises(ConfigError, match="nests more than"):
        load_config(FreeformConfig, loop)


def test_a_deep_flag_value_is_named(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, FreeformConfig)
    args = parser.parse_args(["--extra", "[" * 5000 + "]" * 5000])
    with pytest.raises(ConfigError, match="--extra is nested too deeply"):
        config_from_args(FreeformConfig, args)


def test_yaml_syntax_errors_do_not_echo_the_line(tmp_path: Path) -> None:
    secret = "sk-abcdefghijklmnopqrstuv"
    path = tmp_path / "broken.yaml"
    path.write_text(f"teacher:\n  api_key_env: [{secret}\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: .* at line \d+, column \d+") as err:
        load_config(DemoConfig, path)
    assert secret not in str(err.value)
