"""Greedy speculative decoding gives exactly ``generate(do_sample=False)``, for every draft."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import random_windows, wrap_tiny
from tiny_models import TINY_FAMILIES, VOCAB

from depthlens.models.loading import LoadedModel
from depthlens.speculate import run_speculative, speculate
from depthlens.speculate.stack import speculation_refusal

NEW = 24


def _decodable() -> list[str]:
    out = []
    for name in TINY_FAMILIES:
        lm = wrap_tiny(name)
        if speculation_refusal(lm.model, lm.arch) is None:
            out.append(name)
    return out


DECODABLE = _decodable()
REFUSED = sorted(set(TINY_FAMILIES) - set(DECODABLE))


def _prompt(seed: int = 1, n: int = 12) -> list[int]:
    return torch.randint(3, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _reference(lm: LoadedModel, prompt: list[int], new: int = NEW) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():  # a full mask: every prompt token is attended, pad id or not
        out = lm.model.generate(  # type: ignore[operator]
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new
        )
    return out[0, len(prompt) :].tolist()


def _first_logits(lm: LoadedModel, prompt: list[int], **kw: object) -> torch.Tensor:
    with torch.no_grad():
        out = lm.model.generate(  # type: ignore[operator]
            torch.tensor([prompt]),
            do_sample=False,
            max_new_tokens=1,
            output_logits=True,
            return_dict_in_generate=True,
            **kw,
        )
    return out.logits[0]


def _drafts(lm: LoadedModel) -> list[str]:
    """A skip draft (keeping each attention kind's first block), and two exit depths."""
    from depthlens.arch.kv import kv_layout

    layout = kv_layout(lm.model, lm.arch)
    L = lm.num_layers
    kinds = [layout.layer_types[c] for c in layout.cache_layers]
    firsts = {kinds.index(t) for t in set(kinds)}
    skippable = [b for b in range(1, L) if b not in firsts]
    return [f"skip:{skippable[-1]}", "exit:1", f"exit:{L - 1}"]


def test_the_tiny_families_are_covered() -> None:
    assert len(DECODABLE) >= 15 and {"llama", "gemma3", "gpt2", "phi"} <= set(DECODABLE)
    assert REFUSED == ["bert", "bert_mlm", "lab_deepnorm", "lab_post_ln", "roberta"]


@pytest.mark.parametrize("name", DECODABLE)
def test_skip_and_exit_drafts_give_generate_tokens(name: str) -> None:
    lm = wrap_tiny(name)
    for seed in (1, 2):
        prompt = _prompt(seed)
        ref = _reference(lm, prompt)
        for draft in _drafts(lm):
            for k in (1, 4):
                _, stats = run_speculative(lm, prompt, draft, max_new_tokens=NEW, k=k)
                assert stats.tokens == ref, (draft, k, seed)
                assert stats.iterations >= 1 and 0 <= stats.acceptance <= 1


def test_a_prompt_starting_with_the_pad_id_is_decoded_as_the_model_reads_it() -> None:
    # Qwen2.5's BOS is its pad id, and every wiki prompt starts with it: generate without
    # a mask hides that token (the bench's first reference did, and "diverged" from us);
    # speculative decoding attends to every prompt token, as model(ids) and a full mask do.
    lm = wrap_tiny("qwen2")
    prompt = _prompt(1)
    lm.model.generation_config.pad_token_id = prompt[0]  # type: ignore[union-attr]
    ids = torch.tensor([prompt])
    full = _first_logits(lm, prompt, attention_mask=torch.ones_like(ids))
    assert not torch.allclose(_first_logits(lm, prompt), full, atol=1e-4)  # the hidden BOS
    _, stats = run_speculative(lm, prompt, _drafts(lm)[0], max_new_tokens=NEW, k=2)
    assert stats.tokens == _reference(lm, prompt)


@pytest.mark.parametrize("name", ["llama", "gemma3", "gpt2"])
def test_reduced_vocabulary_draft_is_still_exact(name: str) -> None:
    lm = wrap_tiny(name)
    prompt = _prompt(3)
    ids = torch.arange(3, 40)  # a draft head that cannot even name most tokens
    res = speculate(lm, prompt, "exit:2", max_new_tokens=NEW, k=3, vocab_ids=ids)
    assert res.generated == _reference(lm, prompt)


def test_a_full_draft_accepts_everything() -> None:
    """Sanity check of the bookkeeping: skipping nothing but the last block of a model whose
    last block is made the identity drafts exactly what the full model says."""
    lm = wrap_tiny("llama")
    prompt = _prompt(4)
    last = lm.model.model.layers[-1]  # type: ignore[union-attr,index]
    with torch.no_grad():
        last.mlp.down_proj.weight.zero_()
        last.self_attn.o_proj.weight.zero_()
    res = speculate(lm, prompt, f"skip:{lm.num_layers - 1}", max_new_tokens=NEW, k=4)
    assert res.generated == _reference(lm, prompt)
    assert res.acceptance == 1.0 and res.mean_accepted_length > 4


@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma3"])
def test_plan_draft_with_linear_maps_is_exact_and_leaves_no_hook(name: str, tmp_path) -> None:
    from depthlens.cut import CutOptions, plan_cut, save_plan

    lm = wrap_tiny(name)
    method = "replaceme-ls" if name != "gemma3" else "angular"
    plan = plan_cut(lm, random_windows(n=12, seq_len=16), method, CutOptions(n=1))
    save_plan(plan, tmp_path / "plan.json")
    prompt = _prompt(5)
    ref = _reference(lm, prompt)
    res = speculate(lm, prompt, f"plan:{tmp_path / 'plan.json'}", max_new_tokens=NEW, k=3)
    assert res.generated == ref
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in lm.model.modules())
    assert _reference(lm, prompt) == ref  # the model itself is unchanged


def test_tuned_exit_draft_is_exact(tmp_path) -> None:
    from depthlens.results import Envelope
    from depthlens.tuned.lens import TunedLens, save_lens

    lm = wrap_tiny("llama")
    tuned = TunedLens.for_model(lm)
    with torch.no_grad():
        for t in tuned.translators:
            t.bias.fill_(0.2)
    save_lens(tuned, tmp_path, Envelope(kind="depthlens.tuned_lens", model=lm.identity()))
    prompt = _prompt(6)
    res = speculate(lm, prompt, f"exit:2:tuned:{tmp_path}", max_new_tokens=NEW, k=3)
    assert res.generated == _reference(lm, prompt)


@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_cut_checkpoint_draft_is_exact(name: str, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    from depthlens.arch.spec import resolve_arch
    from depthlens.cut import CutOptions, apply_cut_, plan_cut, save_pruned

    lm = wrap_tiny(name)
    cut = LoadedModel(copy.deepcopy(lm.model), None, lm.arch, ref=lm.ref, source="test")
    plan = plan_cut(cut, random_windows(n=12, seq_len=16), "angular", CutOptions(n=1))
    apply_cut_(cut, plan)
    save_pruned(cut, plan, tmp_path / "cut")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "cut").eval()
    draft = LoadedModel(model, None, resolve_arch(model), ref="cut", source="test")
    prompt = _prompt(7)
    res = speculate(lm, prompt, f"cut:{tmp_path / 'cut'}", max_new_tokens=NEW, k=3, draft_lm=draft)
    assert res.generated == _reference(lm, prompt)
    assert res.acceptance > 0


def test_result_json_round_trip(tmp_path) -> None:
    from depthlens.speculate import SpeculativeResult

    lm = wrap_tiny("llama")
    res = speculate(lm, _prompt(8), "exit:2", max_new_tokens=8, k=2)
    res.save(tmp_path / "r.json")
    d = SpeculativeResult.load(tmp_path / "r.json")
    assert d.generated == res.generated and d.to_dict()["tokens"] == res.generated
    assert d.to_dict()["token_counts"] == {"prompt": 12, "generated": len(res.generated)}
    assert d.draft["kind"] == "exit" and d.k == 2
