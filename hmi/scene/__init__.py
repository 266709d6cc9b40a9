"""3D models without Qt or VTK: GLB validation, model summaries, the probe import and its
verdict cache, GLB writing for tools and tests, and the animation of bound parts.

hmi/ui (the only place VTK lives) loads what this package has checked.
"""

from hmi.scene.report import Issue, ModelReport, ModelSummary, NodeInfo, Severity
from hmi.scene.validate import CheckedModel, Limits, validate_bytes, validate_file

__all__ = [
    "CheckedModel",
    "Issue",
    "Limits",
    "ModelReport",
    "ModelSummary",
    "NodeInfo",
    "Severity",
    "validate_bytes",
    "validate_file",
]
