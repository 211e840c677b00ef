"""Training throughput of the lab model vs the same-size LlamaForCausalLM, same loop.

Speed: one process builds the models to compare and runs the lab's training step
(``depthlens.train.loop.step_loss`` + AdamW + clipping; bf16 autocast on GPU) on each in
turn, step by step (A, B, A, B, …), timing every step: both models see the same machine
load, so the ratio holds on a busy machine. Memory: the training step's own peak,
measured in a fresh worker process per model (CPU: peak of the sampled RSS during model
build + 3 steps minus the RSS after the imports, i.e. weights + gradients + AdamW state +
activations; GPU: torch.cuda.max_memory_allocated).
Targets: lab pre-ln / Llama tokens/s ≥ 0.9; peak memory within 10%. Then each scheme's
tokens/s relative to pre-ln, every registered scheme interleaved in one process.

    .venv/bin/python bench/train_throughput.py [--width 128 --depth 4 --context 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any


def build(ns: argparse.Namespace, kind: str, scheme: str) -> Any:
    """(step function, model) for the lab model of ``scheme`` or its Llama twin."""
    import torch

    from depthlens.train.config import TrainConfig
    from depthlens.train.export import to_llama
    from depthlens.train.loop import make_optimizer, step_loss
    from depthlens.train.model import LabConfig, LabForCausalLM, init_lab_weights_

    dev = torch.device(ns.device)
    cfg = LabConfig(
        vocab_size=ns.vocab,
        hidden_size=ns.width,
        intermediate_size=4 * ns.width,
        num_hidden_layers=ns.depth,
        num_attention_heads=ns.heads,
        scheme=scheme,
    )
    model: Any = LabForCausalLM(cfg)
    init_lab_weights_(model, 0)
    if kind == "llama":
        model = to_llama(model)  # same shapes and weights, Hugging Face's own modules
        model.config._attn_implementation = "sdpa"
    torch.nn.Module.to(model, dev)
    model.train()
    optim = make_optimizer(model, TrainConfig(lr=1e-3))
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, ns.vocab, (ns.batch, ns.context + 1), generator=gen).to(dev)
    cuda = dev.type == "cuda"

    def step() -> None:
        loss = step_loss(model, batch, cuda)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()

    return step


def interleaved(ns: argparse.Namespace, models: list[tuple[str, str]]) -> list[float]:
    """Tokens/s of each (kind, scheme), stepping them in turn; warm-up steps untimed."""
    steps = [build(ns, k, s) for k, s in models]
    for _ in range(ns.warm):
        for st in steps:
            st()
    spent = [0.0] * len(steps)
    n = len(steps)
    for r in range(ns.steps):
        for i in [(r + j) % n for j in range(n)]:  # rotate who goes first each round
            t0 = time.perf_counter()
            steps[i]()
            spent[i] += time.perf_counter() - t0
    return [ns.steps * ns.batch * ns.context / t for t in spent]


def memory_worker(ns: argparse.Namespace) -> None:
    import gc
    import threading

    import torch
    import transformers.models.llama.modeling_llama  # noqa: F401 - imported before the baseline

    import depthlens.train.export  # noqa: F401
    import depthlens.train.loop  # noqa: F401

    cuda = ns.device.startswith("cuda")
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    # Max RSS is useless here (importing torch peaks above a small model's training), so
    # a thread samples the current RSS every 0.2 ms while the steps run (ops drop the GIL).
    rss0, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.0002)

    # A throwaway tiny model first: lazy initialisation (kernels, imports) out of the way.
    tiny = argparse.Namespace(
        **{**vars(ns), "width": 8, "heads": 2, "depth": 1, "vocab": 16, "context": 4, "batch": 1}
    )
    build(tiny, ns.kind, "pre-ln")()
    gc.collect()
    rss0 = rss()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    step = build(ns, ns.kind, "pre-ln")
    for _ in range(3):
        step()
    done.set()
    sampler.join()
    mem = torch.cuda.max_memory_allocated() if cuda else peak[0] - rss0
    print(json.dumps({"mem": mem}))


def peak_memory(ns: argparse.Namespace, kind: str) -> float:
    argv = [sys.executable, __file__, "--memory-worker", "--kind", kind]
    for k in ("width", "depth", "heads", "context", "batch", "vocab", "device"):
        argv += [f"--{k}", str(getattr(ns, k))]
    # Blocks of 64 KiB and more are mmap'ed and unmapped on free, so the RSS follows the
    # live tensors instead of glibc's high-water mark.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["mem"])


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    for k, v in (
        ("width", 128),
        ("depth", 4),
        ("heads", 4),
        ("context", 128),
        ("batch", 8),
        ("vocab", 4096),
        ("steps", 20),
        ("warm", 2),
    ):
        p.add_argument(f"--{k}", type=int, default=v)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--memory-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kind", default="lab", help=argparse.SUPPRESS)
    ns = p.parse_args()
    import torch

    torch.set_num_threads(ns.threads)
    if ns.memory_worker:
        return memory_worker(ns)
    print(
        f"shape: depth {ns.depth}, width {ns.width}, heads {ns.heads}, context {ns.context}, "
        f"batch {ns.batch}, vocab {ns.vocab}; {ns.steps} timed steps each, interleaved; "
        f"device {ns.device}, {ns.threads} thread(s)"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    lab, llama = interleaved(ns, [("lab", "pre-ln"), ("llama", "pre-ln")])
    print(f"lab pre-ln        tokens/s: {lab:,.0f}")
    print(f"LlamaForCausalLM  tokens/s: {llama:,.0f}")
    print(f"lab / Llama tokens/s: {lab / llama:.3f} (target >= 0.9)")
    m_lab, m_llama = peak_memory(ns, "lab"), peak_memory(ns, "llama")
    ratio = f"{m_lab / m_llama:.3f}" if m_llama else "n/a"
    print(
        f"peak training memory: lab {m_lab / 2**20:.1f} MiB, Llama {m_llama / 2**20:.1f} MiB, "
        f"ratio {ratio} (target 0.9-1.1)"
    )
    from depthlens.train.schemes import SCHEMES

    names = SCHEMES.names()  # pre-ln first: the others are relative to it
    tps = interleaved(ns, [("lab", s) for s in names])
    for s, t in zip(names, tps, strict=True):
        print(f"{s:>9} tokens/s {t:>9,.0f}  relative to pre-ln {t / tps[0]:.3f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
