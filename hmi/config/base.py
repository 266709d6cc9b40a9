"""The base of every project-file model: unknown keys are errors, values are frozen, and
types are strict.

Strict because lax coercion hides mistakes in a hand-edited file: `port = "1883"`,
`writable = "yes"` or `keepalive_s = true` would be accepted as 1883, True and 1. With
`strict=True` only a value of the right TOML type passes, with three exceptions that are
what TOML itself writes, spelled out here once: an integer for a float key (`rate_hz = 10`);
an array for a fixed-length pair or vector (TOML has no tuples: `Pair`, `Vector3`); a string
for an enum (`Field(strict=False)` on those keys: pydantic's lax enum matches the value only,
so `datatype = 1` is still refused). A boolean is never a number (strict mode already refuses
it for int and float), except where a key documents it (`NumberOrBool`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _array_as_tuple(value: Any) -> Any:
    # TOML arrays arrive as lists; anything else is left for the strict tuple check to refuse.
    return tuple(value) if isinstance(value, list) else value


def _bool_as_number(value: Any) -> Any:
    return float(value) if isinstance(value, bool) else value


Pair = Annotated[tuple[float, float], BeforeValidator(_array_as_tuple)]
Vector3 = Annotated[tuple[float, float, float], BeforeValidator(_array_as_tuple)]
# A value compared with a tag that may be boolean (a discrete alarm's states): true is 1, false 0.
NumberOrBool = Annotated[float, BeforeValidator(_bool_as_number)]
Port = Annotated[int, Field(ge=0, le=65535)]
# A reference to a secret (environment variable HMI_PASSWORD_<NAME> or credentials.toml), never the secret.
SECRET_REF_PATTERN = r"^[A-Za-z0-9_]+$"
