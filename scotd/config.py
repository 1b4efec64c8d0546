"""Typed stage configs: defaults < YAML file < command-line flags, validated before any work.

Each stage declares one ``StageConfig`` subclass (pydantic, frozen, unknown keys forbidden). The
CLI flags are generated from its fields (``--max-tokens``, ``--teacher.base-url``), so the config
class *is* the CLI. Secrets never live in a config: fields name an environment variable
(``api_key_env: OPENAI_API_KEY``), and string values that look like keys are refused.
"""

from __future__ import annotations

import argparse
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

C = TypeVar("C", bound="StageConfig")
M = TypeVar("M", bound=BaseModel)

# Provider key shapes (OpenAI, Anthropic, HF, bearer tokens): a value like this in a config is a leak.
_SECRET_LIKE = re.compile(r"^(sk-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{16,}|Bearer\s+\S+)")


class ConfigError(ValueError):
    """A configuration problem, with a message that says what to change."""


class StageConfig(BaseModel):
    """Base of every stage's config."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="after")
    def _no_inline_secrets(self) -> StageConfig:
        for name, value in self:
            if isinstance(value, str) and _SECRET_LIKE.match(value.strip()):
                raise ValueError(
                    f"field {name!r} holds what looks like a secret; put it in an environment "
                    "variable and name that variable in the config (e.g. api_key_env: OPENAI_API_KEY)"
                )
        return self


def _leaf_fields(cls: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted name, annotation)`` for every non-model field, nested models flattened."""
    out: list[tuple[str, Any]] = []
    for name, field in cls.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_leaf_fields(ann, f"{prefix}{name}."))
        else:
            out.append((f"{prefix}{name}", ann))
    return out


def _is_str(ann: Any) -> bool:
    if ann is str:
        return True
    origin = get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        return len(args) == 1 and _is_str(args[0])
    if origin is typing.Literal:
        return all(isinstance(a, str) for a in get_args(ann))
    return False


def _parse_cli_value(raw: str, ann: Any) -> Any:
    """Strings stay strings; everything else is read as YAML (``5``, ``true``, ``[1, 3]``, ``null``)."""
    if _is_str(ann) and raw not in ("null", "~"):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[StageConfig]) -> None:
    """Add ``--config`` and one ``--<field>`` flag per (flattened) config field."""
    parser.add_argument("--config", metavar="YAML", help=f"YAML file with {cls.__name__} fields")
    group = parser.add_argument_group(f"{cls.__name__} fields (override the YAML)")
    for dotted, ann in _leaf_fields(cls):
        flag = "--" + dotted.replace("_", "-")
        field = _field_info(cls, dotted)
        default = None
        if field is not None:  # a default_factory field shows what the factory makes
            default = field.default_factory() if field.default_factory is not None else field.default
        help_text = (field.description or "") if field is not None else ""
        group.add_argument(
            flag,
            dest=f"cfg:{dotted}",
            metavar=_metavar(ann),
            default=argparse.SUPPRESS,
            help=f"{help_text} (default: {default!r})".strip(),
        )


def _field_info(cls: type[BaseModel], dotted: str) -> Any:
    head, _, rest = dotted.partition(".")
    field = cls.model_fields.get(head)
    if field is None or not rest:
        return field
    sub = field.annotation
    assert isinstance(sub, type) and issubclass(sub, BaseModel)
    return _field_info(sub, rest)


def _metavar(ann: Any) -> str:
    if get_origin(ann) is typing.Literal:
        return "{" + ",".join(str(a) for a in get_args(ann)) + "}"
    return getattr(ann, "__name__", str(ann)).upper().replace("TYPING.", "")


def overrides_from_args(args: argparse.Namespace, cls: type[StageConfig]) -> dict[str, Any]:
    """The ``--field`` values given on the command line, as a nested dict."""
    anns = dict(_leaf_fields(cls))
    nested: dict[str, Any] = {}
    for key, raw in vars(args).items():
        if not key.startswith("cfg:"):
            continue
        dotted = key.removeprefix("cfg:")
        _set_dotted(nested, dotted, _parse_cli_value(raw, anns[dotted]))
    return nested


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        target = target.setdefault(p, {})
    target[leaf] = value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Build ``cls`` from defaults, then the YAML at ``path``, then ``overrides``.

    Raises ``ConfigError`` naming the file, the key and what is wrong (unknown keys get a
    did-you-mean suggestion).
    """
    data: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of {cls.__name__} fields")
        data = loaded
    data = _merge(data, overrides or {})
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(e, cls, source)) from None


def validate_section(cls: type[M], data: dict[str, Any], section: str) -> M:
    """Validate one stage's section of a bigger config (``distill:`` in the pipeline's YAML).

    Raises ``ValueError`` whose message names each bad key with the section in front
    (``unknown key 'distill.lrr' (did you mean 'lr'?)``).
    """
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ValueError(_explain(e, cls, f"the {section!r} section", prefix=f"{section}.")) from None


def _explain(error: ValidationError, cls: type[BaseModel], source: str, prefix: str = "") -> str:
    lines = [f"invalid {cls.__name__} ({source}):"]
    for err in error.errors():
        key = prefix + ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            owner = _owner(cls, [str(p) for p in err["loc"][:-1]])
            valid = list(owner.model_fields) if owner else []
            close = difflib.get_close_matches(str(err["loc"][-1]), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"  unknown key {key!r}{hint}; valid keys: {', '.join(valid)}")
        else:
            # Never echo the rejected value: it may be a secret pasted in the wrong place.
            lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)


def _owner(cls: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    for p in path:
        field = cls.model_fields.get(p)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        cls = ann
    return cls


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    return load_config(cls, getattr(args, "config", None), overrides_from_args(args, cls))


def write_resolved(config: StageConfig, out_dir: str | Path, name: str = "config.yaml") -> str:
    """Write the fully resolved config next to a stage's outputs (a path or URI; no secrets by construction)."""
    from scotd import storage

    loc = storage.location(str(out_dir))
    body = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    text = f"# {type(config).__name__}, resolved (defaults < YAML < flags)\n{body}"
    storage.write_bytes(loc, name, text.encode("utf-8"))
    return loc.join(name)
