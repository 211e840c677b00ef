"""The papers depthlens's definitions come from, cited once."""

from __future__ import annotations

from depthlens.metrics.records import Paper

CSORDAS = Paper(
    "Csordás, Manning, Potts", 2025, "Do Language Models Use Their Depth Efficiently?", "2505.13898"
)
SHORTGPT = Paper(
    "Men et al.",
    2024,
    "ShortGPT: Layers in Large Language Models are More Redundant Than You Expect",
    "2403.03853",
)
GROMOV = Paper(
    "Gromov et al.", 2024, "The Unreasonable Ineffectiveness of the Deeper Layers", "2403.17887"
)
CURSE = Paper("Sun et al.", 2025, "The Curse of Depth in Large Language Models", "2502.05795")
REPLACEME = Paper(
    "Shopkhoev et al.",
    2025,
    "ReplaceMe: Network Simplification via Depth Pruning and Transformer Block Linearization",
    "2505.02819",
)
TUNED_LENS = Paper(
    "Belrose et al.",
    2023,
    "Eliciting Latent Predictions from Transformers with the Tuned Lens",
    "2303.08112",
)
LOGIT_LENS = Paper("nostalgebraist", 2020, "interpreting GPT: the logit lens (blog post)")
REASONING = Paper(
    "Sun, Wang, Wang, Zhang, Xu",
    2025,
    "Detection and Mitigation of "
    "Hallucination in Large Reasoning Models: A Mechanistic Perspective",
    "2505.12886",
)
DEEP_THINKING = Paper(
    "Chen et al.",
    2026,
    "Think Deep, Not Just Long: Measuring LLM Reasoning Effort via Deep-Thinking Tokens",
    "2602.13517",
)
