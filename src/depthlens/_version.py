"""The one version source of depthlens."""

__version__ = "0.1.0"
SCHEMA_VERSION = 2
