"""Training throughput of the lab model vs the same-size LlamaForCausalLM, same loop.

Each measurement is a fresh worker process (1 thread on CPU) that builds one model, runs
the lab's training step (``depthlens.train.loop.step_loss`` + AdamW + clipping, bf16
autocast on GPU) for --warm steps, then times --steps steps. Workers alternate
lab / Llama / lab / Llama … (--rounds pairs), so both see the same machine load; the
reported ratio is the median of the per-round ratios. Peak memory is the training
step's own: CPU = growth of the worker's max RSS over what it held before the first
step; GPU = torch.cuda.max_memory_allocated. Then each scheme's tokens/s relative to
pre-ln (same alternation). Targets: lab/Llama tokens/s ≥ 0.9, memory within 10%.

    .venv/bin/python bench/train_throughput.py [--width 128 --depth 4 --context 128]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def worker(args: argparse.Namespace) -> None:
    import torch

    from depthlens.train.config import TrainConfig
    from depthlens.train.export import to_llama
    from depthlens.train.loop import make_optimizer, step_loss
    from depthlens.train.model import LabConfig, LabForCausalLM, init_lab_weights_

    torch.set_num_threads(1)
    dev = torch.device(args.device)
    cfg = LabConfig(vocab_size=args.vocab, hidden_size=args.width,
                    intermediate_size=4 * args.width, num_hidden_layers=args.depth,
                    num_attention_heads=args.heads, scheme=args.scheme)
    model = LabForCausalLM(cfg)
    init_lab_weights_(model, 0)
    if args.kind == "llama":
        model = to_llama(model)  # same shapes and weights, Hugging Face's own modules
        model.config._attn_implementation = "sdpa"
    model.to(dev).train()
    optim = make_optimizer(model, TrainConfig(lr=1e-3))
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, args.vocab, (args.batch, args.context + 1), generator=gen).to(dev)
    cuda = dev.type == "cuda"

    def step() -> None:
        loss = step_loss(model, batch, cuda)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)

    step()  # optimizer state allocated
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warm):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    mem = (torch.cuda.max_memory_allocated() if cuda else
           (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024)
    print(json.dumps({"tok_s": args.steps * args.batch * args.context / dt, "mem": mem}))


def run_worker(ns: argparse.Namespace, kind: str, scheme: str) -> dict[str, float]:
    argv = [sys.executable, __file__, "--worker", "--kind", kind, "--scheme", scheme]
    for k in ("width", "depth", "heads", "context", "batch", "vocab", "steps", "warm", "device"):
        argv += [f"--{k}", str(getattr(ns, k))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warm", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--schemes", default="post-ln,lns,deepnorm,rezero,scaled")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kind", default="lab", help=argparse.SUPPRESS)
    p.add_argument("--scheme", default="pre-ln", help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.worker:
        return worker(ns)
    print(f"shape: depth {ns.depth}, width {ns.width}, heads {ns.heads}, context {ns.context}, "
          f"batch {ns.batch}, vocab {ns.vocab}; {ns.steps} timed steps per worker, "
          f"{ns.rounds} rounds, device {ns.device}, 1 thread")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    ratios, mem_ratios, lab_tps, llama_tps = [], [], [], []
    for _ in range(ns.rounds):
        a, b = run_worker(ns, "lab", "pre-ln"), run_worker(ns, "llama", "pre-ln")
        lab_tps.append(a["tok_s"])
        llama_tps.append(b["tok_s"])
        ratios.append(a["tok_s"] / b["tok_s"])
        mem_ratios.append(a["mem"] / b["mem"] if b["mem"] else float("nan"))
    print(f"lab pre-ln   tokens/s (median): {statistics.median(lab_tps):,.0f}")
    print(f"LlamaForCausalLM tokens/s (median): {statistics.median(llama_tps):,.0f}")
    print(f"lab / Llama tokens/s: {statistics.median(ratios):.3f} (per round: "
          f"{', '.join(f'{r:.3f}' for r in ratios)}; target >= 0.9)")
    print(f"lab / Llama peak training memory: {statistics.median(mem_ratios):.3f} "
          f"(per round: {', '.join(f'{r:.3f}' for r in mem_ratios)}; target 0.9-1.1)")
    for scheme in [s for s in ns.schemes.split(",") if s]:
        rel = []
        for _ in range(ns.rounds):
            s, base = run_worker(ns, "lab", scheme), run_worker(ns, "lab", "pre-ln")
            rel.append(s["tok_s"] / base["tok_s"])
        print(f"{scheme:>9} tokens/s relative to pre-ln: {statistics.median(rel):.3f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
