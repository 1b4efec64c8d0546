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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, ValidationError, model_validator
from pydantic_core import core_schema

from scotd.artifacts import CONFIG_FILE

C = TypeVar("C", bound="StageConfig")
M = TypeVar("M", bound=BaseModel)

# Credential shapes: a value like one of these anywhere in a config is a leak waiting to happen
# (config.yaml is written next to every output). Matched anywhere in a string, not only at its
# start, so a key inside a URL or after a prefix is caught too.
_SECRET_LIKE = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"sk-[A-Za-z0-9_\-]{12,}"  # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), most OpenAI-compatible hosts
    r"|hf_[A-Za-z0-9]{16,}"  # Hugging Face
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|AIza[0-9A-Za-z_\-]{30,}"  # Google API key
    r"|(?:gsk|xai|pplx|nvapi)[_-][A-Za-z0-9_\-]{20,}"  # Groq, xAI, Perplexity, NVIDIA
    r"|xox[abpr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # a JWT
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"  # an Authorization header value
    r")"
)
_URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:[^/\s@]+@")  # https://user:password@host
# Configs nest a few levels (pipeline > sample > teacher > field). Anything far deeper, or with
# more values than any real config, is hostile input (or a YAML alias bomb): refuse it before
# pydantic, the secret scan or the YAML writer recurse into it.
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_VALUES = 100_000


class ConfigError(ValueError):
    """A configuration problem, with a message that says what to change."""


def looks_like_secret(value: str) -> bool:
    """True when ``value`` contains something shaped like an API key, token or URL password."""
    return bool(_SECRET_LIKE.search(value) or _URL_CREDENTIALS.search(value))


def check_config_data(data: Any) -> None:
    """Refuse key-shaped strings (values *and* mapping keys) at any depth, and absurd nesting.

    Walks dicts, lists, tuples, sets and pydantic models iteratively (no recursion, so hostile
    input cannot overflow the stack) and stops at ``MAX_CONFIG_DEPTH`` / ``MAX_CONFIG_VALUES``
    (YAML aliases are followed, so an alias bomb hits the value cap, a self-referencing alias the
    depth cap). Raises ``ValueError`` naming the dotted path, never the value.
    """
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    seen = 0
    while stack:
        path, value, depth = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            raise ValueError(
                f"the config holds more than {MAX_CONFIG_VALUES:,} values (YAML aliases expanded); "
                "a stage config is a few dozen fields"
            )
        where = path or "the config"
        if len(where) > 80:
            where = where[:77] + "..."
        if depth > MAX_CONFIG_DEPTH:
            raise ValueError(
                f"{where} nests more than {MAX_CONFIG_DEPTH} levels deep; a stage config nests a few levels"
            )
        if isinstance(value, str):
            if looks_like_secret(value):
                raise ValueError(
                    f"{where} holds what looks like a secret (an API key, token or URL password); "
                    "put it in an environment variable and name that variable in the config "
                    "(e.g. api_key_env: OPENAI_API_KEY)"
                )
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                stack.append((_join(path, name), getattr(value, name), depth + 1))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and looks_like_secret(key):
                    raise ValueError(
                        f"a key under {where} looks like a secret (an API key or token); "
                        "configs only name environment variables"
                    )
                stack.append((_join(path, str(key)), item, depth + 1))
        elif isinstance(value, list | tuple | set | frozenset):
            for i, item in enumerate(value):
                stack.append((f"{path}[{i}]", item, depth + 1))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class StageConfig(BaseModel):
    """Base of every stage's config."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        # "before": on the raw input, so keys and values pydantic would otherwise reject (and echo
        # in "unknown key ...") and free-form sections (dict fields) are scanned too.
        check_config_data(data)
        return data


class ConfigSection(BaseModel):
    """A nested part of a stage config (``teacher:``, ``tiny:``): frozen, unknown keys forbidden."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StageSection(Generic[C]):
    """A stage's config as a section of a bigger one (``distill:`` in the pipeline's YAML).

    It holds the keys the user set, nothing else; ``build`` makes the stage's own config from the
    bigger config's defaults for the stage < those keys < the keys the bigger config owns, and
    validates it with the stage's model (its checks, its did-you-mean errors, prefixed by the
    section's name). Setting an owned key in the section is an error that says where it belongs.
    On the command line a section is one flag taking a mapping (``--distill '{lr: 0.001}'``).
    """

    stage: ClassVar[type[StageConfig]]
    name: ClassVar[str]
    owned: ClassVar[tuple[str, ...]] = ()
    owned_hint: ClassVar[str] = ""
    metavar: ClassVar[str] = "DICT"

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(values or {})

    def __repr__(self) -> str:
        return repr(self.values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StageSection) and type(self) is type(other) and self.values == other.values

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._parse, serialization=core_schema.plain_serializer_function_ser_schema(lambda s: s.values)
        )

    @classmethod
    def _parse(cls, value: Any) -> StageSection[C]:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping of `scotd {cls.name}` fields")
        clash = sorted(set(value) & set(cls.owned))
        if clash:
            keys = ", ".join(f"{cls.name}.{k}" for k in clash)
            raise ValueError(f"{keys}: set by the pipeline itself; {cls.owned_hint}")
        return cls(value)

    def build(self, defaults: Mapping[str, Any], owned: Mapping[str, Any]) -> C:
        """The stage's config: ``defaults`` < the section's keys (a key replaces a default whole) <
        ``owned`` (merged into nested sections: ``teacher: {base_url: ...}`` keeps the other keys)."""
        data = _merge({**defaults, **self.values}, dict(owned))
        return validate_section(self.stage, data, self.name)  # type: ignore[return-value]


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
    """Strings stay strings; everything else is read as YAML (``5``, ``true``, ``[1, 3]``, ``null``).

    Raises ``RecursionError`` for pathologically nested YAML (the caller names the flag).
    """
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
        help_text = _field_info(cls, dotted).description or ""
        group.add_argument(
            flag,
            dest=f"cfg:{dotted}",
            metavar=_metavar(ann),
            default=argparse.SUPPRESS,
            help=f"{help_text} (default: {_default(cls, dotted)!r})".strip(),
        )


def _field_info(cls: type[BaseModel], dotted: str) -> Any:
    head, _, rest = dotted.partition(".")
    field = cls.model_fields.get(head)
    if field is None or not rest:
        return field
    sub = field.annotation
    assert isinstance(sub, type) and issubclass(sub, BaseModel)
    return _field_info(sub, rest)


def _default(cls: type[BaseModel], dotted: str) -> Any:
    """A flag's default as the config holds it: a section's default instance wins over its class's
    field defaults (``tiny: TinySpec = TinySpec(tokenizer="bpe")`` shows ``bpe``)."""
    head, _, rest = dotted.partition(".")
    field = cls.model_fields[head]
    value = field.get_default(call_default_factory=True)  # a factory shows what it makes
    if not rest:
        return value
    if isinstance(value, BaseModel):
        for part in rest.split("."):
            value = getattr(value, part)
        return value
    sub = field.annotation  # a section without a default instance: its class's defaults
    assert isinstance(sub, type) and issubclass(sub, BaseModel)
    return _default(sub, rest)


def _metavar(ann: Any) -> str:
    if isinstance(ann, type) and issubclass(ann, StageSection):
        return ann.metavar
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
        try:
            value = _parse_cli_value(raw, anns[dotted])
        except RecursionError:
            raise ConfigError(_too_deep(f"--{dotted.replace('_', '-')}")) from None
        _set_dotted(nested, dotted, value)
    return nested


def _too_deep(where: str) -> str:
    return f"{where} is nested too deeply to read; a config nests a few levels (at most {MAX_CONFIG_DEPTH})"


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
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start})") from None
        except RecursionError:
            raise ConfigError(_too_deep(f"config file {path}")) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(e)}") from None
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


def _yaml_problem(error: yaml.YAMLError) -> str:
    """Where and what, without PyYAML's echo of the offending line (it may hold a pasted key)."""
    problem = getattr(error, "problem", None) or getattr(error, "context", None) or type(error).__name__
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else str(problem)


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
        loc = ".".join(str(p) for p in err["loc"])
        key = prefix + loc if loc else ""  # a model-level check names its fields in its message
        if err["type"] == "extra_forbidden":
            owner = _owner(cls, [str(p) for p in err["loc"][:-1]])
            valid = list(owner.model_fields) if owner else []
            close = difflib.get_close_matches(str(err["loc"][-1]), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"  unknown key {key!r}{hint}; valid keys: {', '.join(valid)}")
        else:
            # Never echo the rejected value: it may be a secret pasted in the wrong place.
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"  {key}: {msg}" if key else f"  {msg}")
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


def write_resolved(config: StageConfig, out_dir: str | Path, name: str = CONFIG_FILE) -> str:
    """Write the fully resolved config next to a stage's outputs (a path or URI; no secrets by construction)."""
    from scotd import storage

    loc = storage.location(str(out_dir))
    body = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    text = f"# {type(config).__name__}, resolved (defaults < YAML < flags)\n{body}"
    storage.write_bytes(loc, name, text.encode("utf-8"))
    return loc.join(name)
