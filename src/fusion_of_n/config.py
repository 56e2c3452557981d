"""Settings: flags, keyword arguments (and later TOML presets) -> validated values -> built objects.

This is the one module that reads ``os.environ``; everything below it gets an ``env`` mapping.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

DEFAULT_MODEL = "local:qwen2.5-coder-0.5b"


def environment() -> Mapping[str, str]:
    """A snapshot of the process environment (API keys, base URLs, FUSION_OF_N_CACHE)."""
    return dict(os.environ)


def cache_dir(env: Mapping[str, str]) -> Path:
    """Where assembled models live: $FUSION_OF_N_CACHE, else ~/.cache/fusion-of-n."""
    configured = env.get("FUSION_OF_N_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "fusion-of-n"


class RequestLimits(BaseModel):
    """The proxy's bounds on one request; beyond one, ``fusion-of-n serve`` answers 400 naming the field
    and the limit. The ``serve`` flags of the same names set them for every preset; a preset's
    ``[presets.NAME.limits]`` table overrides them field by field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_request_tokens: int = Field(default=32768, ge=1, description="most max_tokens a client may ask for")
    max_samples: int = Field(default=64, ge=1, description="most samples per request: choices x n x models")
    max_stop: int = Field(default=4, ge=0, description="most stop strings (OpenAI allows 4)")
    max_messages: int = Field(default=1000, ge=1, description="most messages per request")
    max_message_bytes: int = Field(default=1_000_000, ge=1, description="most bytes of messages (UTF-8 JSON)")


class PipelineSettings(BaseModel):
    """Everything that decides how one prompt becomes one answer. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    models: tuple[Any, ...] = Field(default=(DEFAULT_MODEL,), min_length=1)  # specs or Backend objects
    n: int = Field(default=5, ge=1, le=256, description="samples per model")
    method: str = "fusion"
    fusor: Any = None  # spec or Backend; default: the first model
    judge: Any = None  # spec or Backend; bon's default scorer when no reward model is given: the fusor
    reward: str | None = None
    temperature: float | None = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    language: str | None = None
    system: str | None = None
    min_candidates: int = Field(default=1, ge=1)
    include_flagged: bool = False
    adaptive: bool = False  # n is the maximum: sample in rounds, stop once the majority answer is settled
    fusor_max_tokens: int | None = Field(default=None, ge=1)
    rpm: float | None = Field(default=None, gt=0, description="requests per minute, per backend")
    tpm: float | None = Field(default=None, gt=0, description="tokens per minute, per backend")
    limits: RequestLimits | None = None  # the proxy's bounds for this preset; unset fields: the server's

    @field_validator("models", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) or not isinstance(value, (list, tuple)) else value

    @classmethod
    def of(cls, **values: Any) -> PipelineSettings:
        """Validate, turning pydantic's report into one ConfigError line per problem."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown setting {where!r}")
        else:
            problems.append(f"{where}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(problems)


DEFAULT_PRESET = "fusion-of-n"


def load_presets(path: str | Path) -> dict[str, PipelineSettings]:
    """Named presets from a TOML file: ``[presets.NAME]`` tables of PipelineSettings fields.

    Any unknown key (top level or in a preset) is an error naming the key and the file.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"presets"})
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {path}; the file holds [presets.NAME] tables")
    tables = data.get("presets", {})
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path} defines no presets; add a [presets.NAME] table with at least 'models'")
    presets = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"presets.{name} in {path} must be a table of settings")
        try:
            presets[name] = PipelineSettings(**table)
        except ValidationError as exc:
            raise ConfigError(f"{path}, preset {name!r}: {describe_validation_error(exc)}") from None
    return presets
