"""HMI/SCADA workstation for machine digital twins."""

__version__ = "0.1.0"
