"""Project files (TOML) turned into validated, typed models. Every error names file and key."""

from hmi.config.loader import ConfigError, ConfigIssue, load_project
from hmi.config.models import Project

__all__ = ["ConfigError", "ConfigIssue", "Project", "load_project"]
