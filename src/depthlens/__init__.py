"""depthlens: measure how a pretrained network uses its depth, and cut what it does not use."""

from depthlens._version import __version__

__all__ = ["__version__"]
