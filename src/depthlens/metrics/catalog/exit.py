"""Early-exit metrics: what stopping at the lens's first confident reading costs and keeps.

Computed by :mod:`depthlens.exit.curve` for every rule (confidence, entropy, settled) and
threshold, from per-token, per-depth lens readings (logit or tuned lens) of held-out text.
"""

from __future__ import annotations

from depthlens.metrics.catalog.papers import TUNED_LENS
from depthlens.metrics.records import MetricRecord, Paper, metric

CALM = Paper("Schuster et al.", 2022, "Confident Adaptive Language Modeling", "2207.07061")

_ACC = "per-token exit depth and readings kept for the threshold sweep (bounded by --max-tokens)"


def _exit(
    name: str,
    definition: str,
    label: str,
    caption: str,
    *,
    unit: str = "",
    finalize: str = "mean over tokens",
) -> MetricRecord:
    return metric(
        MetricRecord(
            name=name,
            family="exit",
            definition=definition,
            papers=(CALM, TUNED_LENS),
            shape="scalar",
            accumulate=_ACC,
            finalize=finalize,
            caption=caption,
            label=label,
            unit=unit,
            plot="none",
        )
    )


EXIT_DEPTH = _exit(
    "mean_exit_depth",
    "mean over tokens of the first depth e (1..L blocks) "
    "where the exit rule fires; L when it never does",
    "exit depth",
    "Blocks a token runs before it exits.",
    unit="blocks",
)
EXIT_FLOPS = _exit(
    "flops_saved",
    "Σ FLOPs of the skipped blocks / FLOPs of the full forward (blocks + head), per token",
    "FLOPs saved",
    "Ideal compute saved by exiting, ignoring the cost of the readouts.",
)
EXIT_FLOPS_NET = _exit(
    "flops_saved_net",
    "flops_saved − (e − 1) · (unembedding + translator FLOPs) / full FLOPs",
    "net FLOPs saved",
    "Compute saved once every lens readout before the exit is paid "
    "for; negative when the readouts cost more than the skipped blocks.",
)
EXIT_AGREE = _exit(
    "exit_agreement",
    "share of tokens whose exited top-1 equals the full model's top-1",
    "agreement",
    "How often the early answer is the model's own answer.",
)
EXIT_PPL = _exit(
    "exit_perplexity",
    "exp(mean −log p_e(next token)) with each token's exited distribution p_e",
    "exit ppl",
    "Language-model quality when exited predictions are used.",
    finalize="exp of the mean NLL over tokens with a next token",
)
