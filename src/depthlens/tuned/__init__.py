"""Tuned lens (Belrose et al. 2023): per-layer affine translators before the logit lens."""
