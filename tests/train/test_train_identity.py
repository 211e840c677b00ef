"""A trained model's train.json records the weights digest the saved checkpoint loads with."""

from __future__ import annotations

import json
from pathlib import Path

from train_helpers import tiny_args, write_text

from depthlens.cli.main import main
from depthlens.models.loading import load_model


def test_train_json_records_the_saved_weights(tmp_path: Path) -> None:
    text, out = write_text(tmp_path / "t.txt"), tmp_path / "run"
    assert main(tiny_args(text, out, steps=4)) == 0
    recorded = json.loads((out / "train.json").read_text())["model"]["weights"]
    assert recorded and load_model(str(out)).identity()["weights"] == recorded
