"""``depthlens train``: text → tokenizer → lab model → trained checkpoint + train.json.

The output folder is the checkpoint the rest of depthlens reads (a plain Llama for
pre-ln/lns/scaled/rezero, the lab class for post-ln/deepnorm) plus ``train.json``
(envelope kind ``depthlens.train``: config, loss curve, held-out loss, tokens/s). While a
run is in progress the folder holds ``checkpoint/`` and ``tokenizer/``; running the same
command again resumes it, and ``train.json`` (written last) marks it finished.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depthlens.dist import rank_world
from depthlens.errors import DepthlensError
from depthlens.train.checkpoint import TrainState, load_checkpoint
from depthlens.train.config import TrainConfig
from depthlens.train.export import export_model
from depthlens.train.loop import Chunks, LoopHooks, make_optimizer, train_loop
from depthlens.train.model import LabConfig, LabForCausalLM, init_lab_weights_
from depthlens.train.result import TrainResult
from depthlens.train.tokenizer import load_tokenizer, token_stream, train_tokenizer

RESULT = "train.json"
MARKER = "train-run.json"  # the config of an unfinished run, for resuming


def lab_config(cfg: TrainConfig, vocab_size: int, eos: int) -> LabConfig:
    """The model shape a :class:`TrainConfig` asks for."""
    return LabConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.width,
        intermediate_size=cfg.mlp_ratio * cfg.width,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.heads,
        max_position_embeddings=cfg.context,
        scheme=cfg.scheme,
        drop_path=cfg.drop_path,
        scheme_depth=cfg.depth,
        block_index=list(range(1, cfg.depth + 1)),
        bos_token_id=eos,
        eos_token_id=eos,
    )


def prepare_output(out: Path, cfg: TrainConfig, overwrite: bool) -> None:
    """Create ``out``, or accept it to resume the same unfinished run (rank 0)."""
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise DepthlensError(f"output {out} is a file; pass a folder for -o")
    if out.exists() and any(out.iterdir()):
        same = marker.is_file() and json.loads(marker.read_text()) == cfg.identity()
        finished = (out / RESULT).is_file()
        if overwrite:
            shutil.rmtree(out)
        elif finished:
            raise DepthlensError(
                f"output {out} holds a finished run; pass --overwrite or choose another -o"
            )
        elif not same:
            raise DepthlensError(
                f"output {out} exists and is not an unfinished run with these "
                "settings; pass --overwrite or choose another -o"
            )
    if not out.parent.exists():
        raise DepthlensError(
            f"the folder for output {out} does not exist; create {out.parent} first"
        )
    out.mkdir(exist_ok=True)
    marker.write_text(json.dumps(cfg.identity(), sort_keys=True))


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _tokenizer(out: Path, docs: tuple[str, ...], cfg: TrainConfig, given: Any) -> Any:
    rank, world = rank_world()
    tdir = out / "tokenizer"
    if given is None and rank == 0 and not (tdir / "tokenizer.json").is_file():
        train_tokenizer(docs, cfg.vocab_size).save_pretrained(tdir)
    elif given is not None and rank == 0:
        given.save_pretrained(tdir)
    _barrier(world)
    return load_tokenizer(tdir)


def pick_device(device: str | None) -> torch.device:
    """``--device``, or the rank's GPU under torchrun, or cuda when present, else cpu."""
    import os

    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def eval_loss(model: torch.nn.Module, tokenizer: Any, cfg: TrainConfig, device: Any) -> float:
    """Mean next-token loss on the held-out text (``eval_data``), context-length windows."""
    from depthlens.data import load_text

    stream = token_stream(load_text(cfg.eval_data, text_field=cfg.text_field).docs, tokenizer)
    chunks = Chunks.of(stream, cfg.context, cfg.seed).rows
    chunks = chunks[: max(1, cfg.eval_tokens // cfg.context)]
    total, n = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for b in chunks.split(cfg.batch_size):
            b = b.to(device)
            logits = model(input_ids=b[:, :-1]).logits.float()
            total += float(
                torch.nn.functional.cross_entropy(
                    logits.flatten(0, 1), b[:, 1:].flatten(), reduction="sum"
                ).double()
            )
            n += b[:, 1:].numel()
    return total / n


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    checkpoint_every: int = 0,
    device: str | None = None,
    tokenizer: Any = None,
    progress: bool = True,
) -> TrainResult:
    """Train one lab model on ``cfg.data`` and save it into ``out`` (resuming if unfinished).

    ``tokenizer`` reuses an already trained tokenizer (the study trains one for all runs).
    Device, output folder and data are checked before any work; a failure that leaves
    nothing to resume (no checkpoint) leaves no folder either.
    """
    from depthlens.train.guard import check_device, check_output_folder, load_disjoint

    rank, world = rank_world()
    cfg.validate(world)
    if checkpoint_every < 0:
        raise DepthlensError(f"--checkpoint-every must be ≥ 0 steps, got {checkpoint_every}")
    out = Path(out)
    check_device(device)
    if rank == 0:
        check_output_folder(out)
    source = load_disjoint(cfg.data, cfg.eval_data, cfg.text_field)
    if rank == 0:
        prepare_output(out, cfg, overwrite)
    _barrier(world)
    run = _Run(cfg, out, checkpoint_every, device, progress)
    if rank != 0:
        return run.go(source, tokenizer)
    from depthlens.train.checkpoint import checkpoint_path
    from depthlens.train.guard import removed_on_failure

    with removed_on_failure(out, lambda: checkpoint_path(out).is_file()):
        return run.go(source, tokenizer)


@dataclass
class _Run:
    """One training run once its inputs are checked: tokenizer, model, loop, export."""

    cfg: TrainConfig
    out: Path
    checkpoint_every: int
    device: str | None
    progress: bool

    def go(self, source: Any, tokenizer: Any) -> TrainResult:
        """Train, evaluate on the held-out text, export (rank 0) and return the result."""
        cfg, out = self.cfg, self.out
        rank, world = rank_world()
        tok = _tokenizer(out, source.docs, cfg, tokenizer)
        chunks = Chunks.of(token_stream(source.docs, tok), cfg.context, cfg.seed)
        dev = pick_device(self.device)
        torch.manual_seed(cfg.seed)
        model = LabForCausalLM(lab_config(cfg, len(tok), int(tok.eos_token_id)))
        init_lab_weights_(model, cfg.seed)
        torch.nn.Module.to(model, dev)  # (PreTrainedModel.to's stub rejects a device)
        optim = make_optimizer(model, cfg)
        ident = {**cfg.identity(), "vocab": len(tok)}
        state = load_checkpoint(out, model, optim, ident) or TrainState()
        if state.step and rank == 0 and self.progress:
            print(f"resuming {out} from step {state.step}", file=sys.stderr, flush=True)
        bar = _Bar(cfg, state.step, enabled=self.progress and rank == 0)
        hooks = LoopHooks(out, self.checkpoint_every, ident, bar.update)
        try:
            state = train_loop(model, optim, chunks, cfg, state, hooks, dev)
        finally:
            bar.close()
        held_out = eval_loss(model, tok, cfg, dev)
        saved_as = _export(out, model, tok) if rank == 0 else ""
        result = _result(out, model, cfg, source, state, held_out, saved_as)
        if rank == 0:
            _finish(out, result)
        _barrier(world)
        return result


class _Bar:
    """tqdm bar over steps with loss and tokens/s (ETA is tqdm's)."""

    def __init__(self, cfg: TrainConfig, initial: int, enabled: bool) -> None:
        from depthlens.progress import progress_bar

        self.bar = progress_bar(
            cfg.steps, f"train {cfg.scheme} L={cfg.depth}", enabled=enabled, initial=initial
        )

    def update(self, step: int, loss: float, tps: float) -> None:
        set_postfix = getattr(self.bar, "set_postfix_str", None)
        if set_postfix is not None:
            set_postfix(f"loss={loss:.3f} tok/s={tps:,.0f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _saved_digest(model: LabForCausalLM) -> str | None:
    """Weights digest of the checkpoint as saved (the Llama form where there is one)."""
    from depthlens.models.digest import weights_digest
    from depthlens.train.export import to_llama
    from depthlens.train.schemes import SCHEMES

    return weights_digest(
        to_llama(model) if SCHEMES[model.config.scheme].exports_as_llama else model
    )


def _export(out: Path, model: LabForCausalLM, tok: Any) -> str:
    """Save the trained model and its tokenizer into ``out``; returns the class saved as."""
    torch.nn.Module.to(model, "cpu")
    model.float().eval()
    tmp = out / ".export-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    cls = export_model(model, tok, tmp)
    for f in tmp.iterdir():
        f.replace(out / f.name)
    tmp.rmdir()
    return cls


def _result(
    out: Path,
    model: LabForCausalLM,
    cfg: TrainConfig,
    source: Any,
    state: TrainState,
    held_out: float,
    saved_as: str,
) -> TrainResult:
    """What ``train.json`` holds."""
    from depthlens.results import Envelope

    ident = {
        "ref": str(out),
        "class": saved_as,
        "model_type": model.config.model_type,
        "scheme": cfg.scheme,
        "num_layers": cfg.depth,
        "hidden_size": cfg.width,
        "n_params": sum(p.numel() for p in model.parameters()),
        "weights": _saved_digest(model) if saved_as else None,  # rank 0 only (it saved)
    }
    env = Envelope(
        kind=TrainResult.KIND,
        model=ident,
        data=source.to_dict(),
        options=cfg.to_dict(),
        tokens={"trained": cfg.steps * cfg.tokens_per_step},
    )
    return TrainResult(
        envelope=env,
        losses=list(state.losses),
        eval_loss=held_out,
        eval_ppl=math.exp(held_out) if held_out < 700 else None,
        seconds=state.seconds,
        cpu_seconds=state.cpu_seconds,
        steps=cfg.steps,
        tokens_per_s=cfg.steps * cfg.tokens_per_step / max(state.seconds, 1e-9),
        saved_as=saved_as,
    )


def _finish(out: Path, result: TrainResult) -> None:
    """Write train.json last (it marks the run finished), drop the resume files."""
    from depthlens.io import follow_umask_

    result.save(out / RESULT)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    shutil.rmtree(out / "tokenizer", ignore_errors=True)
    (out / MARKER).unlink(missing_ok=True)
    follow_umask_(out)  # save_pretrained writes model.safetensors 0600
