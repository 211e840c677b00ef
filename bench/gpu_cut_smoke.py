"""Every cut method, healing and the evaluation on a device, on a tiny random Llama.

A seconds-long check, meant for the first minute on a lent GPU before the real-model runs
(``bench/gpu_check.py``, ``bench/prune_quality.py --device cuda``): each method plans and
applies a 2-block cut on the device and on the CPU, and the line says whether the device
run worked, whether it removed the same blocks, and the largest relative difference of
the cut model's logits. The model is random, so this checks device handling, not quality.

    python bench/gpu_cut_smoke.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import sys
import traceback
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny_models import tiny_model  # noqa: E402

from depthlens.arch.spec import resolve_arch  # noqa: E402
from depthlens.cut import METHODS, CutOptions, apply_cut_, plan_cut  # noqa: E402
from depthlens.cut.search import SearchOptions  # noqa: E402
from depthlens.cut.units import Budget  # noqa: E402
from depthlens.data import TokenWindows  # noqa: E402
from depthlens.models.loading import LoadedModel  # noqa: E402


def _windows(n: int = 8, seq_len: int = 32, vocab: int = 128) -> TokenWindows:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (n, seq_len), generator=gen)
    ids[:, 0] = 1
    return TokenWindows(
        ids, torch.ones_like(ids), {"source": {"name": "random"}, "seq_len": seq_len}
    )


def _lm(model: Any, device: str) -> LoadedModel:
    m = copy.deepcopy(model).to(device)
    return LoadedModel(m, None, resolve_arch(m), ref="tiny-llama", source="test")


def _cut(base: Any, device: str, method: str, w: TokenWindows) -> tuple[Any, torch.Tensor]:
    lm = _lm(base, device)
    search = SearchOptions(beam=2, score_windows=2, batch_size=2)
    units = method == "units-ls"  # a budget instead of n: half the blocks' FLOPs
    opts = CutOptions(
        n=None if units else 2,
        greedy_windows=2,
        search=search,
        budget=Budget("flops", 0.4, context=w.seq_len) if units else None,
    )
    plan = plan_cut(lm, w, method, opts)
    apply_cut_(lm, plan)
    with torch.inference_mode():
        logits = lm.model(input_ids=w.input_ids[:2].to(lm.device)).logits.float().cpu()
    return (*plan.removed, *plan.sublayers), logits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    a = ap.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_cut_smoke: skipped: torch sees no CUDA device")
        return 0
    torch.manual_seed(0)
    base, w = tiny_model("llama"), _windows()
    ok = True
    for method in a.methods.split(","):
        try:
            r_cpu, l_cpu = _cut(base, "cpu", method, w)
            r_dev, l_dev = _cut(base, a.device, method, w)
            rel = float((l_dev - l_cpu).norm() / l_cpu.norm())
            same = r_cpu == r_dev
            good = same and rel < 1e-3
            print(
                f"{method:<16} {'PASS' if good else 'FAIL'} removed {list(r_dev)} "
                f"(cpu {list(r_cpu)}) logits rel diff {rel:.1e}",
                flush=True,
            )
            ok &= good
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            print(f"{method:<16} ERROR {type(e).__name__}: {e}", flush=True)
            ok = False
    print("gpu_cut_smoke: ALL PASS" if ok else "gpu_cut_smoke: SOME FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
