"""The healing loop: distil the original into a cut model over a token budget.

AdamW on what :func:`~depthlens.heal.targets.make_trainable` unfroze, a linear warm-up then a
cosine schedule over the whole budget, the held-out perplexity every ``eval_interval`` steps
(the healing curve), early stopping when it stops improving for ``patience`` evaluations
(the best weights are kept), and a resumable state every ``checkpoint_interval`` steps.
The model runs in eval mode throughout: no dropout or drop-path, so a step is a function of
its batch and the weights alone, and a resumed run ends with the same weights.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from depthlens.data.windows import TokenWindows
from depthlens.evaluate.perplexity import batch_nll
from depthlens.heal.distill import check_same_tokenizer, distill_loss
from depthlens.heal.options import HealOptions
from depthlens.heal.result import HealResult
from depthlens.heal.state import (
    HealState,
    load_state,
    load_trainable_,
    save_state,
    trainable_state,
)
from depthlens.heal.stream import FixedStream, HealData
from depthlens.heal.targets import (
    CutSites,
    check_healable,
    make_trainable,
    merge_back,
    rezero_cut_sublayers_,
)
from depthlens.models.loading import LoadedModel
from depthlens.results import Envelope


def held_out_nll(model: Any, windows: TokenWindows, device: Any, batch_size: int = 4) -> float:
    """Mean next-token NLL (nats) of ``model`` on ``windows``."""
    total, count = 0.0, 0
    with torch.inference_mode():
        for ids, mask in windows.batches(batch_size):
            s, c = batch_nll(model, ids.to(device), mask.to(device))
            total, count = total + s, count + c
    return total / max(count, 1)


class _Run:
    """One healing run's moving parts (model, optimizer, data, held-out windows, state)."""

    def __init__(
        self,
        lm: LoadedModel,
        teacher: LoadedModel,
        opts: HealOptions,
        sites: CutSites,
        evals: TokenWindows | None,
    ) -> None:
        self.lm, self.teacher, self.opts, self.evals = lm, teacher, opts, evals
        self.model = make_trainable(lm, opts, sites)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optim = torch.optim.AdamW(self.params, lr=opts.lr, weight_decay=0.0)
        self.points = sites.cut_points()
        self.st = HealState()
        self.model.eval()

    def evaluate(self) -> None:
        """Add a point to the held-out curve; keep the best weights; decide early stopping."""
        if self.evals is None:
            return
        st, o = self.st, self.opts
        nll = held_out_nll(self.model, self.evals, self.lm.device, o.batch_size)
        recent = [r["kl"] for r in st.log[-o.eval_interval :]]
        point = {
            "step": st.step,
            "tokens": st.tokens,
            "nll": nll,
            "ppl": math.exp(nll) if nll < 700 else math.inf,
            "lr": o.lr_at(max(st.step - 1, 0)) if st.step else 0.0,
            "kl": sum(recent) / len(recent) if recent else None,
        }
        st.curve.append(point)
        if st.best is None or nll < st.best["nll"]:  # the kept weights: the lowest point
            st.best, st.best_params = point, trainable_state(self.model)
        if st.mark is None or nll < st.mark - o.min_delta:  # a gain that resets patience
            st.mark, st.bad = nll, 0
        else:
            st.bad += 1
            if o.patience and st.bad >= o.patience:
                st.stopped = "early"

    def step(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """One optimizer step on a batch."""
        st = self.st
        lr = self.opts.lr_at(st.step)
        for g in self.optim.param_groups:
            g["lr"] = lr
        ids, mask = ids.to(self.lm.device), mask.to(self.lm.device)
        with torch.enable_grad():
            loss, parts = distill_loss(
                self.model, self.teacher.model, ids, mask, self.points, self.opts.mse_weight
            )
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
        self.optim.step()
        st.step += 1
        st.tokens += int(mask.sum())
        st.log.append({"step": st.step, "lr": lr, **parts})


def _identity(lm: LoadedModel, teacher: LoadedModel, opts: HealOptions, data: Any, ev: Any) -> Any:
    """What a saved state must match to be resumed."""
    return {
        "student": lm.identity()["fingerprint"],
        "teacher": teacher.identity()["fingerprint"],
        "options": opts.to_dict(),
        "data": data.identity,
        "eval": ev.identity if ev is not None else None,
    }


def heal_(
    lm: LoadedModel,
    teacher: LoadedModel,
    data: HealData | TokenWindows,
    opts: HealOptions,
    sites: CutSites,
    *,
    evals: TokenWindows | None = None,
    state_dir: Path | None = None,
    progress: bool = False,
) -> HealResult:
    """Distil ``teacher`` into ``lm`` in place; merge LoRA back; return the record.

    ``data`` is a stream (:class:`~depthlens.heal.stream.TextStream`) or fixed windows,
    read from where a saved state in ``state_dir`` stopped; ``evals`` are the held-out
    windows of the curve (without them there is no curve and no early stopping).
    """
    opts.validate()
    check_healable(lm, opts.train)
    check_same_tokenizer(lm, teacher)
    stream = FixedStream(data, opts.seed) if isinstance(data, TokenWindows) else data
    ident = _identity(lm, teacher, opts, stream, evals)
    run = _Run(lm, teacher, opts, sites, evals)
    if state_dir is not None:
        run.st = load_state(state_dir, run.model, run.optim, ident) or run.st
    _loop(run, stream, ident, state_dir, progress)
    best, curve = run.st.best, run.st.curve
    if run.st.best_params is not None and best is not None and best["step"] != curve[-1]["step"]:
        load_trainable_(run.model, run.st.best_params)  # early stopping keeps the best
    trained = [_module_name(n) for n, p in run.model.named_parameters() if p.requires_grad]
    merge_back(lm, run.model, opts)
    rezero_cut_sublayers_(lm, sites)
    return _result(run, stream, trained, sites)


def _module_name(param: str) -> str:
    """``base_model.model.X.lora_A.default.weight`` (peft) or ``X.weight`` -> ``X``."""
    name = param.removeprefix("base_model.model.")
    return name.split(".lora_", 1)[0] if ".lora_" in name else name.rsplit(".", 1)[0]


def _loop(run: _Run, stream: HealData, ident: Any, state_dir: Path | None, progress: bool) -> None:
    from depthlens.progress import progress_bar

    st, o = run.st, run.opts
    t0, seconds0 = time.perf_counter(), st.seconds
    if st.step == 0 and not st.curve:
        run.evaluate()
    bar = progress_bar(o.total_steps, "heal", enabled=progress, unit="step")
    bar.update(st.step)
    batches = stream.batches(o.batch_size, st.cursor)
    while st.step < o.total_steps and st.stopped is None:
        (ids, mask), st.cursor = next(batches)
        run.step(ids, mask)
        bar.update(1)
        last = st.step == o.total_steps
        if st.step % o.eval_interval == 0 or last:
            run.evaluate()
        st.seconds = seconds0 + time.perf_counter() - t0
        due = st.step % o.checkpoint_interval == 0 or last or st.stopped is not None
        if state_dir is not None and due:
            save_state(state_dir, run.model, run.optim, st, ident)
    bar.close()
    st.stopped = st.stopped or "budget"


def _result(run: _Run, stream: HealData, trained: list[str], sites: CutSites) -> HealResult:
    st, o, lm = run.st, run.opts, run.lm
    env = Envelope(
        kind=HealResult.KIND,
        model=lm.identity(),
        data=stream.identity,
        options=o.to_dict(),
        tokens={"healing": st.tokens, "eval": run.evals.n_tokens if run.evals else 0},
    )
    return HealResult(
        envelope=env,
        teacher=run.teacher.identity(),
        train=o.train,
        trained_modules=sorted(set(trained)),
        trainable_params=sum(p.numel() for p in run.params),
        steps=st.step,
        healing_tokens=st.tokens,
        stopped=str(st.stopped),
        seconds=st.seconds,
        curve=st.curve,
        best=st.best,
        eval_data=run.evals.identity if run.evals is not None else None,
        cut_points=[list(p) for p in run.points],
        log=st.log,
        resumed_from=st.resumed_from,
    )
