"""Loading models by reference, and the packaged models."""

from depthlens.models.loading import LoadedModel, default_cache_dir, load_model
from depthlens.models.registry import DEFAULT_MODEL, PACKAGED

__all__ = ["DEFAULT_MODEL", "PACKAGED", "LoadedModel", "default_cache_dir", "load_model"]
