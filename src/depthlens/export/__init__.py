"""Deployment formats for cut checkpoints: GGUF for llama.cpp (:mod:`depthlens.export.gguf`)."""

from depthlens.export.gguf import TYPES, export_gguf

__all__ = ["TYPES", "export_gguf"]
