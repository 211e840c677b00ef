"""``lens.json`` files written before it was typed still read, field for field.

The fixtures are the exact dicts the earlier ``save_lens`` wrote through ``write_result``:
one from the first tuned-lens release (no ``init``, no held-out curve) and one from the
release that added the held-out KL curve (``heldout_kl``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from depthlens.errors import DepthlensError
from depthlens.results import Envelope, write_result
from depthlens.tuned.result import META, HeldoutKL, LensTraining, TunedLensResult

_LENS = {
    "n_layers": 3,
    "d_model": 8,
    "reads": "translator l reads h_l, the stream entering block l; h_L is read without one",
    "form": "softmax(U · final_norm(h + A_l h + b_l))",
}
_FIRST = {
    "steps": 4,
    "tokens_seen": 120,
    "unique_windows": 8,
    "seconds": 1.5,
    "loss_first_step": [0.5, 0.4, 0.3],
    "loss_last_steps": [0.2, 0.1, 0.05],
    "loss_last_steps_n": 1,
    "loss_curve_mean_over_layers": [0.4, 0.3, 0.2, 0.12],
    "loss": "KL(p_L ‖ p_l) in nats, mean over tokens, per translator l = 0..L-1",
}
_CURVE = {
    "tokens": [0, 60, 120],
    "kl": [[0.5, 0.4, 0.3], [0.3, 0.2, 0.1], [0.2, 0.1, 0.06]],
    "data": {"source": "text", "n_windows": 2},
    "n_tokens": 30,
    "what": "mean KL(p_L ‖ p_l) per translator on held-out tokens, after the "
    "initialisation (tokens = 0) and every eval_every steps (training tokens seen)",
}
_WITH_CURVE = {
    **_FIRST,
    "init": {"kind": "identity", "tokens": 0, "seconds": 0.0},
    "heldout_kl": _CURVE,
}


def _write(tmp_path: Path, training: dict[str, Any]) -> Path:
    env = Envelope(kind="depthlens.tuned_lens", model={"ref": "tiny", "num_layers": 3})
    write_result(tmp_path / META, env, {"lens": _LENS, "training": training})
    return tmp_path / META


@pytest.mark.parametrize("training", [_FIRST, _WITH_CURVE], ids=["first", "heldout"])
def test_lens_json_of_earlier_releases_reads_back(tmp_path: Path, training) -> None:
    import json

    path = _write(tmp_path, training)
    res = TunedLensResult.load(path)
    assert (res.n_layers, res.d_model) == (3, 8)
    assert res.training.steps == 4 and res.training.loss_first_step == [0.5, 0.4, 0.3]
    assert res.to_dict() == json.loads(path.read_text())  # no field lost or added
    if "heldout_kl" in training:
        curve = res.training.heldout_kl
        assert isinstance(curve, HeldoutKL) and curve.tokens == [0, 60, 120]
        assert curve.n_tokens == 30 and curve.mean_kl()[-1] == pytest.approx(0.12)
    else:
        assert res.training.heldout_kl is None and res.training.init is None


def test_lens_json_without_its_shape_is_one_error(tmp_path: Path) -> None:
    env = Envelope(kind="depthlens.tuned_lens", model={"ref": "tiny"})
    write_result(tmp_path / META, env, {"training": _FIRST})
    with pytest.raises(DepthlensError, match="n_layers"):
        TunedLensResult.load(tmp_path / META)


def test_a_hand_saved_lens_has_an_empty_training_record() -> None:
    assert LensTraining().to_dict()["steps"] == 0
    assert "heldout_kl" not in LensTraining().to_dict()


def test_the_measured_smollm2_lens_json_reads_back_exactly() -> None:
    """bench/results keeps the lens.json of the SmolLM2 held-out-curve run, as written."""
    import json

    path = Path(__file__).resolve().parents[2] / "bench/results/tuned_lens_curve_smollm2.json"
    res = TunedLensResult.load(path)
    assert res.n_layers == 30 and res.training.heldout_kl is not None
    assert res.training.heldout_kl.tokens[0] == 0
    assert res.to_dict() == json.loads(path.read_text(encoding="utf-8"))
