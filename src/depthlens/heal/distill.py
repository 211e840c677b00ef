"""The distillation loss of healing, and the check that teacher and student can be compared.

Loss per batch (Hinton et al., 2015, "Distilling the knowledge in a neural network"):
KL(p_teacher ‖ p_student) of the next-token distributions, averaged over real tokens, plus
optionally ``mse_weight`` × the normalised squared error ‖h_s − h_t‖² / ‖h_t‖² of the
residual stream right after each merge block (the cut points: the student's state after
kept block i against the teacher's h_e, the end of the run that block i replaces).
"""

from __future__ import annotations

from typing import Any

import torch

from depthlens.errors import DepthlensError
from depthlens.models.loading import LoadedModel


def check_same_tokenizer(student: LoadedModel, teacher: LoadedModel) -> None:
    """The distillation compares distributions token by token: the vocabularies must agree."""
    ts, tt = student.tokenizer, teacher.tokenizer
    vs = int(student.model.config.get_text_config().vocab_size)  # type: ignore[union-attr,operator]
    vt = int(teacher.model.config.get_text_config().vocab_size)  # type: ignore[union-attr,operator]
    same = vs == vt and (ts is None or tt is None or ts.get_vocab() == tt.get_vocab())
    if not same:
        raise DepthlensError(
            f"the teacher {teacher.ref} has a different tokenizer from the cut model "
            f"{student.ref} (vocabulary {vt} vs {vs} tokens, or different token ids); heal "
            "with the model the cut was made from"
        )


def distill_loss(
    student: Any,
    teacher: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    points: list[tuple[int, int]],
    mse_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss to minimise, its parts as floats) for one batch ``ids``/``mask`` (B, T)."""
    want_h = mse_weight > 0 and bool(points)
    with torch.no_grad():
        t_out = teacher(
            input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=want_h
        )
    s_out = student(
        input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=want_h
    )
    keep = mask.bool()
    t_logp = torch.log_softmax(t_out.logits.float()[keep], dim=-1)  # (N, V)
    s_logp = torch.log_softmax(s_out.logits.float()[keep], dim=-1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean()
    parts = {"kl": float(kl.detach())}
    loss = kl
    if want_h:
        mse = torch.stack(
            [
                ((s_out.hidden_states[i + 1][keep] - t_out.hidden_states[e][keep]) ** 2).sum()
                / (t_out.hidden_states[e][keep] ** 2).sum()
                for i, e in points
            ]
        ).mean()
        parts["mse"] = float(mse.detach())
        loss = loss + mse_weight * mse
    return loss, parts
