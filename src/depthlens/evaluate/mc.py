"""Multiple choice on BIG-bench JSON tasks (SPEC "Evaluation").

Each choice is scored by the log-likelihood of the full continuation given the question
(sum and per-token mean); accuracy is reported against chance (mean of 1 / #choices).
BIG-bench is optional: its task JSON files are read, never imported, either from an
installed ``bigbench`` package or from the copy that ``scripts/setup-bigbench.sh`` puts in
the depthlens cache (current pip refuses to install the bigbench sdist).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depthlens.data.windows import pad_batch
from depthlens.errors import DepthlensError
from depthlens.metrics.accumulate import host_sum, widen
from depthlens.models.loading import LoadedModel
from depthlens.paths import default_cache_dir

BIGBENCH_SETUP = "bash scripts/setup-bigbench.sh"
#: Tasks whose choices are full continuations (a 135M model is above chance on them).
DEFAULT_TASKS = ("cause_and_effect/one_sentence_no_prompt", "goal_step_wikihow/step_inference")


@dataclass(frozen=True)
class MCExample:
    """One question and its choices; ``answer`` is the index of the best-scored choice."""

    context: str
    choices: tuple[str, ...]
    answer: int


def bigbench_root() -> Path | None:
    """``benchmark_tasks`` of an installed bigbench, else the cached copy, else None."""
    spec = importlib.util.find_spec("bigbench")
    if spec is not None and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0]) / "benchmark_tasks"
        if root.is_dir():
            return root
    cached = default_cache_dir() / "bigbench" / "benchmark_tasks"
    return cached if cached.is_dir() else None


def bigbench_available() -> bool:
    """Whether BIG-bench task files can be found."""
    return bigbench_root() is not None


def bigbench_task_path(task: str) -> Path:
    """Path of ``benchmark_tasks/<task>/task.json``."""
    root = bigbench_root()
    if root is None:
        raise DepthlensError(f"BIG-bench tasks are not installed; run `{BIGBENCH_SETUP}`")
    path = root / task / "task.json"
    if not path.is_file():
        raise DepthlensError(f"no BIG-bench task '{task}' (looked for {path})")
    return path


def load_task_json(path: str | Path, max_examples: int | None = None) -> list[MCExample]:
    """Read a BIG-bench JSON task: ``examples`` with ``input`` and ``target_scores``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    prefix = data.get("example_input_prefix", "")
    out = []
    for ex in data.get("examples", []):
        scores = ex.get("target_scores")
        if not scores:
            continue
        choices = tuple(scores)
        answer = max(range(len(choices)), key=lambda i: scores[choices[i]])
        out.append(MCExample(prefix + str(ex["input"]), choices, answer))
        if max_examples is not None and len(out) >= max_examples:
            break
    if not out:
        raise DepthlensError(f"{path} has no multiple-choice examples (target_scores)")
    return out


def continuation_logprobs(
    model: torch.nn.Module,
    context: list[int],
    choices: list[list[int]],
    device: torch.device | str = "cpu",
) -> list[tuple[float, int]]:
    """(sum log p, n tokens) of each choice's tokens after ``context``, one batch.

    ``device``: the model's input device (``LoadedModel.device``); the ids are built on
    the CPU and moved there, and only the per-choice sums come back.
    """
    ids, mask = pad_batch([context + c for c in choices])
    with torch.inference_mode():
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
        ).logits
    out = []
    for i, c in enumerate(choices):
        pos = torch.arange(len(context) - 1, len(context) - 1 + len(c))
        # (n_c, V) rows in float64 on the model's device: only the needed positions.
        logp = torch.log_softmax(widen(logits[i, pos.to(logits.device)]), dim=-1)
        picked = logp.gather(-1, torch.tensor(c, device=logp.device).unsqueeze(-1))
        out.append((float(host_sum(picked)), len(c)))
    return out


def evaluate_multiple_choice(lm: LoadedModel, examples: list[MCExample]) -> dict[str, Any]:
    """Accuracy by summed and by per-token-mean log-likelihood, and chance level."""
    tok = lm.tokenizer
    if tok is None:
        raise DepthlensError("multiple choice needs a tokenizer")
    bos = [tok.bos_token_id] if getattr(tok, "bos_token_id", None) is not None else []
    hits_sum = hits_mean = 0
    chance = 0.0
    for ex in examples:
        ctx = bos + tok.encode(ex.context, add_special_tokens=False)
        chs = [tok.encode(" " + c.strip(), add_special_tokens=False) for c in ex.choices]
        scores = continuation_logprobs(lm.model, ctx, chs, lm.device)
        hits_sum += int(max(range(len(chs)), key=lambda i: scores[i][0]) == ex.answer)
        hits_mean += int(
            max(range(len(chs)), key=lambda i: scores[i][0] / max(scores[i][1], 1)) == ex.answer
        )
        chance += 1 / len(chs)
    n = len(examples)
    return {
        "acc": hits_sum / n,
        "acc_mean_logp": hits_mean / n,
        "chance": chance / n,
        "n_examples": n,
    }
