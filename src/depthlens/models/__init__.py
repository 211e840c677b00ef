"""Loading models by reference, and the packaged models."""

# The vision networks are declared beside their module definition: importing it here puts
# them in PACKAGED before anyone can read it (every import of models.registry runs this).
import depthlens.models.vision  # noqa: F401
from depthlens.models.loading import LoadedModel, default_cache_dir, load_model
from depthlens.models.registry import DEFAULT_MODEL, PACKAGED

__all__ = ["DEFAULT_MODEL", "PACKAGED", "LoadedModel", "default_cache_dir", "load_model"]
