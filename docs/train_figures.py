"""Write the figures of docs/TRAIN.md from a study folder (``depthlens study depth -o DIR``).

    .venv/bin/python docs/train_figures.py DIR

Copies DIR/study.json to docs/train_study.json and draws docs/train_*.png with the same
functions the study's HTML report uses.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from depthlens.results import read_result
from depthlens.train.report import by_scheme, heatmap, loss_plot, rms_plot

HERE = Path(__file__).parent


def main(study_dir: str) -> None:
    """Copy the study JSON and draw every figure of docs/TRAIN.md."""
    src = Path(study_dir) / "study.json"
    _env, payload = read_result(src, "study")
    shutil.copyfile(src, HERE / "train_study.json")
    runs = [r for r in payload["runs"] if not r.get("diverged")]
    (HERE / "train_loss.png").write_bytes(loss_plot(runs))
    (HERE / "train_rms.png").write_bytes(rms_plot(runs))
    for scheme, rs in by_scheme(runs).items():
        (HERE / f"train_removal_{scheme}.png").write_bytes(heatmap(rs, scheme))


if __name__ == "__main__":
    main(sys.argv[1])
