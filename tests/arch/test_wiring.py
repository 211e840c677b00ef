"""Every model type the architecture table admits, checked against the model's own outputs.

For each type a tiny random model (tests/tiny_models.py) must satisfy, through depthlens'
own capture, lens and cut code: h_{l+1} = h_l + a_l + m_l with h_l from the model's
``output_hidden_states``; final norm + head (with the logit scale and soft-cap of the
resolved wiring) = the model's logits; and a cut model, saved and reloaded with plain
transformers, = the original with the removed blocks skipped by hooks.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import random_windows
from tiny_models import N_LAYERS, TINY_FAMILIES, VOCAB, tiny_model
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

from depthlens.arch.spec import FAMILIES, ArchSpec, blocks_of, resolve_arch
from depthlens.capture.hooks import block_input, capture_blocks, first_tensor, hooks
from depthlens.causal.replay import zero_sublayer
from depthlens.cut import CalibrationOptions, CutOptions, apply_cut_, plan_cut, save_pruned
from depthlens.cut.apply import remove_blocks_
from depthlens.errors import DepthlensError, UnsupportedArchitectureError
from depthlens.metrics.lens import Lens
from depthlens.models.loading import LoadedModel

ATOL = 1e-5
#: Every fixture of a table model type (the multimodal Gemma 3 is model_type "gemma3").
NAMES = sorted([*TINY_FAMILIES, "gemma3_multimodal"])
#: Types whose sublayer output is normalised before the add or that are post-norm.
NO_REPLACEME = {
    "gemma2",
    "gemma3",
    "gemma3_multimodal",
    "olmo2",
    "bert",
    "bert_mlm",
    "roberta",
    "lab_post_ln",
    "lab_deepnorm",
}
# Lab models pin L and every ℓ in their config (scheme_depth, block_index): cuts are exact.
NO_CUT: set[str] = set()


def _inputs(seq: int = 10) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(3, VOCAB, (2, seq), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0  # right padding
    return {"input_ids": ids, "attention_mask": mask}


def _model(name: str) -> tuple[nn.Module, ArchSpec]:
    model = tiny_model(name)
    return model, resolve_arch(model)


def _is_encoder(spec: ArchSpec) -> bool:
    return not spec.causal


def test_every_admitted_model_type_has_a_fixture() -> None:
    admitted = {mt for spec in FAMILIES.values() for mt in spec.model_types}
    covered = {tiny_model(n).config.model_type for n in NAMES}
    assert admitted <= covered, f"no tiny fixture for {sorted(admitted - covered)}"


@pytest.mark.parametrize("name", NAMES)
def test_capture_decomposes_the_stream(name: str) -> None:
    """h_{l+1} − h_l = a_l + m_l, with h_l from the model itself (not from our hooks)."""
    model, spec = _model(name)
    inputs = _inputs()
    with capture_blocks(model, spec, mlp=True) as trace, torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
        # h_0 .. h_{L-1} are block inputs for every family; the lab model only gives logits.
        ref = out.hidden_states or [model.get_input_embeddings()(inputs["input_ids"])]
    n = len(blocks_of(model, spec))
    for l in range(n):
        h, h_next = trace.states[l], trace.states[l + 1]
        a, m = trace.attn[l], trace.mlp[l]
        assert h is not None and h_next is not None and a is not None and m is not None
        if l < len(ref):
            torch.testing.assert_close(h, ref[l], atol=ATOL, rtol=0)
        torch.testing.assert_close(h_next - h, a + m, atol=ATOL, rtol=0, msg=f"block {l}")
        assert float(a.norm()) > 0 and float(m.norm()) > 0


@pytest.mark.parametrize("name", ["gpt_neox", "gpt_neox_sequential", "phi", "llama", "granite"])
def test_parallel_flag_matches_what_the_mlp_reads(name: str) -> None:
    """Removing block 1's attention leaves its m_1 unchanged iff the block is parallel."""
    model, spec = _model(name)
    block = blocks_of(model, spec)[1]
    with capture_blocks(model, spec, mlp=True) as clean, torch.no_grad():
        model(**_inputs())
    with zero_sublayer(block, spec, "attn"), capture_blocks(model, spec, mlp=True) as cut:
        with torch.no_grad():
            model(**_inputs())
    m_clean, m_cut = clean.mlp[1], cut.mlp[1]
    assert m_clean is not None and m_cut is not None
    unchanged = torch.allclose(m_clean, m_cut, atol=ATOL, rtol=0)
    assert unchanged == spec.wiring.parallel


@pytest.mark.parametrize("name", NAMES)
def test_lens_at_the_last_layer_is_the_models_logits(name: str) -> None:
    model, spec = _model(name)
    if not spec.has_lens:
        assert _is_encoder(spec)
        pytest.skip("encoder: no logit lens")
    with capture_blocks(model, spec, attn=False) as trace, torch.no_grad():
        out = model(**_inputs(), use_cache=False)
        h_last = trace.states[-1]
        assert h_last is not None
        z = Lens.of(model, spec).logits(h_last.flatten(0, 1))  # (B*T, V)
    torch.testing.assert_close(z, out.logits.flatten(0, 1).float(), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("granite", "branch_multiplier", 0.5),
        ("granite", "logit_scale", 4.0),
        ("gemma2", "logit_softcap", 2.0),
        ("gemma3", "logit_softcap", 2.0),
        ("gemma3_multimodal", "logit_softcap", None),  # the wrapper ignores the text cap
        ("olmo2", "norm", "sandwich"),
        ("gemma2", "norm", "sandwich"),
        ("bert", "norm", "post"),
        ("gpt_neox", "parallel", True),
        ("gpt_neox_sequential", "parallel", False),
        ("llama", "branch_multiplier", 1.0),
    ],
)
def test_wiring_is_read_from_the_config(name: str, field: str, value: Any) -> None:
    # Each value makes the tests above fail when ignored (e.g. a lens without Granite's /4).
    spec = _model(name)[1]
    assert getattr(spec.wiring, field) == value
    assert spec.to_dict()["wiring"][field] == value  # what every output JSON records


# ---------------------------------------------------------------- cut, save, reload


def _reference(model: nn.Module, spec: ArchSpec, plan: Any, inputs: dict) -> torch.Tensor:
    """The original model with the removed blocks skipped (and T applied) by hooks."""
    blocks = blocks_of(model, spec)

    def identity(_m: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
        h = block_input(args, kwargs)
        return (h, *out[1:]) if isinstance(out, tuple) else h

    def handles() -> list[Any]:
        hs = [blocks[i].register_forward_hook(identity, with_kwargs=True) for i in plan.removed]
        if plan.transform is not None:
            t = plan.transform.float()
            mlp = blocks[plan.merge_into].get_submodule(spec.mlp)
            hs.append(mlp.register_forward_hook(lambda _m, _a, o: first_tensor(o) @ t))
        return hs

    with hooks(handles), torch.no_grad():
        return _output(model(**inputs, use_cache=False) if spec.causal else model(**inputs))


def _output(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("name", NAMES)
def test_cut_model_reloads_and_matches_hook_reference(name: str, tmp_path) -> None:
    model, spec = _model(name)
    lm = LoadedModel(model, None, spec, ref=f"tiny-{name}", source="test")
    method = "angular" if name in NO_REPLACEME else "replaceme-ls"
    plan = plan_cut(lm, random_windows(n=4, seq_len=16), method, CutOptions(n=2))
    assert (plan.transform is not None) == (method == "replaceme-ls")
    inputs = _inputs()
    ref = _reference(model, spec, plan, inputs)
    if name in NO_CUT:
        with pytest.raises(DepthlensError, match="depth"):
            apply_cut_(lm, plan)
        return
    apply_cut_(lm, plan)
    out = save_pruned(lm, plan, tmp_path / "pruned")
    loader: Any = {"gemma3_multimodal": type(model), "bert_mlm": AutoModelForMaskedLM}.get(
        name, AutoModelForCausalLM if spec.causal else AutoModel
    )
    reloaded = loader.from_pretrained(out).eval()
    assert len(blocks_of(reloaded, resolve_arch(reloaded))) == N_LAYERS + 2 * (name == "gemma3") - 2
    with torch.no_grad():
        got = _output(reloaded(**inputs, use_cache=False) if spec.causal else reloaded(**inputs))
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(NO_REPLACEME - {"bert_mlm"}))
def test_replaceme_refused_where_the_mlp_output_is_not_mergeable(name: str) -> None:
    model, spec = _model(name)
    lm = LoadedModel(model, None, spec, ref=f"tiny-{name}", source="test")
    with pytest.raises(DepthlensError, match="--method angular"):
        plan_cut(lm, random_windows(n=4, seq_len=16), "replaceme-ls", CutOptions(n=2))


@pytest.mark.parametrize("name", ["granite", "llama", "gpt_neox", "phi", "gpt2"])
def test_replaceme_fit_reads_what_the_mlp_adds(name: str) -> None:
    """T = lstsq(M, Z) with M = multiplier · MLP output (naive: full forward, stacked rows)."""
    model, spec = _model(name)
    lm = LoadedModel(model, None, spec, ref=f"tiny-{name}", source="test")
    w = random_windows(n=12, seq_len=16)  # 192 rows for a 32 x 32 map: well conditioned
    plan = plan_cut(
        lm, w, "replaceme-ls", CutOptions(n=2, calibration=CalibrationOptions(holdout_every=0))
    )
    s, n = plan.removed[0], plan.n_removed
    blocks = blocks_of(model, spec)
    got: dict[str, torch.Tensor] = {}
    mult = {"granite": 0.5}.get(name, 1.0)  # the fixture's residual_multiplier

    def handles() -> list[Any]:
        # h_{s+n} from the block's own output: HF's last hidden state is after the final norm.
        return [
            blocks[s - 1]
            .get_submodule(spec.mlp)
            .register_forward_hook(lambda _m, _a, o: got.update(m=mult * first_tensor(o))),
            blocks[s - 1].register_forward_hook(lambda _m, _a, o: got.update(h=first_tensor(o))),
            blocks[s + n - 1].register_forward_hook(
                lambda _m, _a, o: got.update(end=first_tensor(o))
            ),
        ]

    with hooks(handles), torch.no_grad():
        model(input_ids=w.input_ids, attention_mask=w.attention_mask, use_cache=False)
    sel = w.attention_mask.bool()
    m = got["m"][sel].double()
    z = (got["end"] - (got["h"] - got["m"]))[sel].double()
    assert plan.transform is not None
    torch.testing.assert_close(
        plan.transform, torch.linalg.lstsq(m, z).solution, atol=1e-5, rtol=1e-5
    )


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("name", "forced", "says"),
    [
        ("granite", "llama", "--arch granite"),  # residual_multiplier / logits_scaling unread
        ("gemma2", "gemma", "--arch gemma2"),  # soft-cap unread
        ("olmo2", "llama", "post-sublayer norm"),
        ("gpt_neox", "generic", "--arch gpt_neox"),  # use_parallel_residual unread
        ("olmo2", "generic", "post-sublayer norm"),
    ],
)
def test_a_family_that_cannot_describe_the_wiring_refuses(
    name: str, forced: str, says: str
) -> None:
    with pytest.raises(UnsupportedArchitectureError, match=says):
        resolve_arch(tiny_model(name), forced)


def test_unresolved_spec_has_no_wiring() -> None:
    with pytest.raises(RuntimeError, match="resolve_arch"):
        FAMILIES["llama"].wiring  # noqa: B018


def test_cut_refused_when_blocks_depend_on_their_index() -> None:
    model = tiny_model("gpt2")
    model.config.scale_attn_by_inverse_layer_idx = True  # attention scaled by 1/(layer_idx+1)
    lm = LoadedModel(model, None, resolve_arch(model), ref="tiny-gpt2", source="test")
    with pytest.raises(DepthlensError, match="scale_attn_by_inverse_layer_idx"):
        remove_blocks_(lm, (1,))
    assert lm.num_layers == N_LAYERS  # nothing was removed


@pytest.mark.e2e
def test_real_model_decomposes_and_its_lens_gives_its_logits(real_lm: LoadedModel) -> None:
    model, spec = real_lm.model, real_lm.arch
    assert spec.wiring.norm == "pre" and spec.wiring.branch_multiplier == 1.0
    ids = torch.randint(3, 40000, (1, 24), generator=torch.Generator().manual_seed(0))
    with capture_blocks(model, spec, mlp=True) as trace, torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits[0]  # (T, V)
        states = trace.all_states()
        lens = Lens.of(model, spec).logits(states[-1][0])
    torch.testing.assert_close(lens, logits.float(), atol=1e-4, rtol=1e-4)
    for l in range(real_lm.num_layers):
        a, m = trace.attn[l], trace.mlp[l]
        assert a is not None and m is not None
        # massive activations reach ~1e3: compare relative to the stream
        torch.testing.assert_close(states[l + 1] - states[l], a + m, atol=1e-3, rtol=1e-4)
