"""The one-pass profile: every streaming metric from one forward over the data."""

from depthlens.profiling.result import Profile, ProfileOptions
from depthlens.profiling.run import profile, token_masks

__all__ = ["Profile", "ProfileOptions", "profile", "token_masks"]
