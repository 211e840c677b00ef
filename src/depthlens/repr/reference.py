"""DADApy's own TwoNN and GRIDE code, for cross-checking depthlens's estimators.

DADApy 0.3.4 does not install beside this torch (it pins numpy<2 and jax 0.4.30), so the
cross-checks (tests/repr/test_repr_gride.py, bench/repr_dadapy_crosscheck.py) run its
estimator code from the unpacked source distribution: the module ``dadapy/_utils/utils.py``
(GRIDE's ``_argmax_loglik``; numpy, scipy and scikit-learn only) and the method
``IdEstimation._compute_id_2NN`` (TwoNN's fit) lifted out of ``dadapy/id_estimation.py``,
because importing that module would import all of DADApy (jax).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any


def dadapy_estimators(src: Path) -> tuple[Any, Any]:
    """(``dadapy._utils.utils`` as a module, ``_compute_id_2NN``) from the sdist in ``src``."""
    import numpy as np

    spec = importlib.util.spec_from_file_location("dadapy_utils", src / "dadapy/_utils/utils.py")
    assert spec is not None and spec.loader is not None
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    tree = ast.parse((src / "dadapy/id_estimation.py").read_text())
    fn = next(
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_compute_id_2NN"
    )
    ns: dict[str, Any] = {"np": np}
    exec("from scipy.optimize import curve_fit", ns)
    exec(compile(ast.Module([fn], []), "id_estimation.py", "exec"), ns)
    return utils, ns["_compute_id_2NN"]
