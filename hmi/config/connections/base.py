"""What every connection kind shares, and what a kind must say about itself.

A kind is one model (a subclass of SourceConnection with `kind: Literal["..."]`), one source
module (named by `source_class`) and one entry in the registry (hmi/config/connections/__init__.py).
docs/adding-a-source.md walks through it.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from hmi.config.base import SECRET_REF_PATTERN, Strict
from hmi.config.tags import TagConfig
from hmi.core.tags import SourceAddress
from hmi.core.values import DEFAULT_MAX_AGE_S, DEFAULT_MAX_AHEAD_S, TimestampWindow

# (key path inside the tag's table, message): what a kind finds wrong with a tag's keys.
TagProblem = tuple[list[str | int], str]


class Credentials(Strict):
    """A user name and a reference to the password (never the password itself)."""

    user: str | None = Field(default=None, min_length=1)
    # Looked up as the environment variable HMI_PASSWORD_<NAME> or in the user's
    # credentials file (data folder, credentials.toml, readable by its owner only).
    password_ref: str | None = Field(default=None, pattern=SECRET_REF_PATTERN)

    @model_validator(mode="after")
    def _ref_needs_user(self) -> Credentials:
        if self.password_ref is not None and self.user is None:
            raise ValueError("password_ref needs a user")
        return self


class SourceConnection(Credentials):
    """What every source connection shares: credentials and the window of source timestamps it
    trusts (hmi/core/values.py: a time outside it is replaced by the arrival time, UNCERTAIN)."""

    # Said by each kind (ClassVars, not keys of the file):
    label: ClassVar[str] = ""  # the protocol's name in messages, e.g. "OPC UA"
    source_class: ClassVar[str] = ""  # "module:Class" of the source that serves it (hmi/sources/base.py)
    tag_keys: ClassVar[frozenset[str]] = frozenset()  # which of config/tags.py KIND_TAG_KEYS it accepts
    browsable: ClassVar[bool] = False  # the tag browser can browse it (the source has browse/watch)

    timestamp_max_age_s: float = Field(default=DEFAULT_MAX_AGE_S, gt=0)
    timestamp_max_ahead_s: float = Field(default=DEFAULT_MAX_AHEAD_S, ge=0)

    def timestamp_window(self) -> TimestampWindow:
        return TimestampWindow(self.timestamp_max_age_s, self.timestamp_max_ahead_s)

    def address_of(self, tag: TagConfig) -> SourceAddress | None:
        """The tag's typed address for this kind's source (None: `address` alone says it)."""
        return None

    def tag_problems(self, tag: TagConfig) -> list[TagProblem]:
        """What is wrong with a tag of this connection beyond the schema (keys of the tag's table)."""
        return []
