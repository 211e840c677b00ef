"""depthlens report: escaping, structure, captions computed from numbers, CLI errors."""

from __future__ import annotations

import base64
import copy
import json
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import random_windows, wrap_tiny

from depthlens.cli.main import main
from depthlens.profiling import ProfileOptions, profile
from depthlens.profiling.result import Profile
from depthlens.report import build_report, write_report
from depthlens.report import captions as cap
from depthlens.report.page import SCRIPT

SCRIPT_PAYLOAD = "<script>alert(1)</script>"
IMG_PAYLOAD = "<img src=x onerror=alert(1)>"
PAYLOADS = (SCRIPT_PAYLOAD, IMG_PAYLOAD, '"><svg onload=alert(1)>')

PROFILE_PLOTS = {
    "rel-contrib",
    "cosine",
    "lens",
    "prediction-depth",
    "resid-norm",
    "angular",
    "block-influence",
    # No hand-made figure: drawn from their metric records (report/records.py).
    "lens-ce",
    "lens-entropy",
}
EXTRA_PLOTS = {"cut-ppl", "cut-speed", "skip-out-kl", "skip-future"}


@pytest.fixture(scope="module")
def tiny_profile() -> dict[str, Any]:
    """A real profile of a tiny random llama, as a JSON dict."""
    lm = wrap_tiny("llama")
    prof = profile(lm, random_windows(), ProfileOptions(lens_kernel="eager"), progress=False)
    return json.loads(json.dumps(prof.to_dict()))


@pytest.fixture(scope="module")
def hostile_page(tiny_profile: dict[str, Any]) -> str:
    """The full report (every plot, really rendered) of a profile and results full of
    attack strings; several tests read this one page."""
    return build_report(Profile.from_dict(hostile(tiny_profile)), results())


def hostile(d: dict[str, Any]) -> dict[str, Any]:
    """The profile with attack strings wherever text comes from a model, data or option."""
    d = copy.deepcopy(d)
    d["model"]["ref"] = f"evil{SCRIPT_PAYLOAD}{IMG_PAYLOAD}"
    d["model"]["class"] = IMG_PAYLOAD
    d["data"]["source"]["name"] = SCRIPT_PAYLOAD
    d["data"][IMG_PAYLOAD] = SCRIPT_PAYLOAD
    d["options"][SCRIPT_PAYLOAD] = IMG_PAYLOAD
    d["options"]["note"] = PAYLOADS[2]
    d["created"] = IMG_PAYLOAD
    return d


def _row(
    label: str, method: str | None, removed: list[int], ppl: float, ideal: float, **speed: float
) -> dict[str, Any]:
    """One model row of a compare result, as ``depthlens compare`` writes it."""
    return {
        "label": label,
        "ref": label,
        "fingerprint": "0" * 16,
        "method": method,
        "removed": removed,
        "n_removed": len(removed),
        "num_layers": 4 - len(removed),
        "ppl": ppl,
        "nll": 3.0,
        "n_tokens": 100,
        "flops_per_token": 1e6,
        "ppl_ratio": ppl / 20.0,
        "ideal_speedup": ideal,
        **speed,
    }


def results(method: str = "angular") -> list[dict[str, Any]]:
    """Cut, plan and causal results as the other subcommands write them."""
    compare = {
        "kind": "depthlens.compare",
        "models": [
            _row("original", None, [], 20.0, 1.0, prefill_speedup=1.0, decode_speedup=1.0),
            _row(IMG_PAYLOAD, method, [2], 26.0, 1.3, prefill_speedup=1.2, decode_speedup=1.1),
            _row("b", "replaceme-ls", [2], 23.0, 1.3),
        ],
    }
    quality = {
        "kind": "depthlens.bench.prune_quality",
        "rows": [
            {"label": "original", "method": None, "n": 0, "ppl_wiki": 20.0},
            {
                "method": "last",
                "n": 2,
                "ppl_wiki": 80.0,
                "ppl_news": 90.0,
                "prefill_speedup": 1.4,
                "ideal_speedup": 1.6,
            },
        ],
    }
    plan = {"kind": "depthlens.cut_plan", "method": SCRIPT_PAYLOAD, "removed": [2], "num_layers": 4}
    future = [[None, 0.5, 0.3, 0.2], [None, None, 0.2, 0.1], [None, None, None, 0.05], [None] * 4]
    kl = [2.0, 0.3, 0.1, 0.5]
    skip = {
        "kind": "depthlens.skip",
        "arch": {},
        "loss": 2.0,
        "skip_out_kl_mean": kl,
        "skip_out_kl_max": kl,
        "delta_loss": kl,
        "skip_future": future,
        "skip_future_max": future,
        "attn_only": None,
        "mlp_only": None,
    }
    think = {
        "kind": "depthlens.think",
        "arch": {},
        "prompt": "p",
        "text": "t",
        "span": {},
        "deep_thinking_ratio": 0.2,
        "per_token": [
            {"token": t, "reasoning_score": 0.1 * i, "settling_layer": i % 5, "deep": i % 5 >= 4}
            for i, t in enumerate(["Hello", SCRIPT_PAYLOAD, IMG_PAYLOAD, PAYLOADS[2], " world"])
        ],
    }
    return [compare, quality, plan, skip, think]


class Page(HTMLParser):
    """Collects what a browser would treat as live: elements, attributes, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    p.close()
    return p


def figures(page: Page) -> dict[str, bytes]:
    """{plot id: PNG bytes} of every <figure class="plot">, in order."""
    out: dict[str, bytes] = {}
    current = None
    for tag, attrs in page.tags:
        if tag == "figure" and attrs.get("class") == "plot":
            current = (attrs.get("id") or "").removeprefix("plot-")
        elif tag == "img" and current is not None:
            src = attrs.get("src") or ""
            assert src.startswith("data:image/png;base64,"), src[:40]
            out[current] = base64.b64decode(src.split(",", 1)[1], validate=True)
            current = None
    return out


def captions_of(html: str) -> dict[str, str]:
    """{plot id: caption} (captions are escaped plain text inside <figcaption>)."""
    out = {}
    for chunk in html.split('<figure class="plot" id="plot-')[1:]:
        pid = chunk.split('"', 1)[0]
        out[pid] = unescape(chunk.split("<figcaption>", 1)[1].split("</figcaption>", 1)[0])
    return out


def test_hostile_strings_are_never_live(hostile_page: str) -> None:
    html = hostile_page
    page = parse(html)
    # The only script is ours, byte for byte.
    assert [t for t, _ in page.tags].count("script") == 1
    assert page.scripts == [SCRIPT]
    # No event-handler attribute anywhere, no element the payloads would create.
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.lower().startswith("on")], (tag, attrs)
        assert tag not in ("svg", "iframe", "object", "embed")
        if tag == "img":
            assert (attrs.get("src") or "").startswith("data:image/png;base64,")
    # The payloads appear only escaped: as text to the parser, never as markup.
    for payload in PAYLOADS:
        assert payload not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    text = "".join(page.text)
    assert SCRIPT_PAYLOAD in text and IMG_PAYLOAD in text


def test_no_external_urls(hostile_page: str) -> None:
    html = hostile_page
    page = parse(html)
    for _tag, attrs in page.tags:
        for name in ("src", "href", "action", "srcset", "poster"):
            v = attrs.get(name)
            assert v is None or v.startswith("data:"), (name, v)
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    csp = [a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in (csp[0] or "")


def assert_real_picture(png: bytes, pid: str) -> None:
    """A decodable PNG of plot size with drawn content (not one flat colour)."""
    import io

    import matplotlib.image as mpimg
    import numpy as np

    assert png.startswith(b"\x89PNG\r\n\x1a\n"), pid
    img = mpimg.imread(io.BytesIO(png), format="png")  # (H, W, C) floats in 0..1
    assert img.shape[0] >= 200 and img.shape[1] >= 300, (pid, img.shape)
    rgb = img[..., :3].reshape(-1, 3)
    dark = (rgb.mean(axis=1) < 0.5).mean()  # axes, text and lines on a white background
    assert 0.002 < dark < 0.5, (pid, dark)
    # more than a few flat colours (colours to 2 decimals, each coded as one integer)
    code = (rgb * 100).round().astype(np.int64) @ np.array([101 * 101, 101, 1])
    assert len(np.unique(code)) > 8, pid


def test_every_plot_present_and_a_real_png(hostile_page: str) -> None:
    html = hostile_page
    figs = figures(parse(html))
    assert set(figs) == PROFILE_PLOTS | EXTRA_PLOTS
    for pid, png in figs.items():
        assert_real_picture(png, pid)
    assert 'id="strip-tokens"' in html  # the think token strip
    caps = captions_of(html)
    assert all(len(c) > 20 for c in caps.values()), caps


@pytest.mark.usefixtures("no_pixels")
def test_profile_only_report_has_profile_plots(tiny_profile: dict[str, Any]) -> None:
    html = build_report(Profile.from_dict(tiny_profile), [])
    assert set(figures(parse(html))) == PROFILE_PLOTS
    assert "strip-tokens" not in html


@pytest.mark.usefixtures("no_pixels")
def test_causal_data_from_profile_extra(tiny_profile: dict[str, Any]) -> None:
    d = copy.deepcopy(tiny_profile)
    skip, think = results()[3], results()[4]
    d["extra"] = {"causal": skip, "think": think}
    html = build_report(Profile.from_dict(d), [])
    assert {"skip-out-kl", "skip-future"} <= set(figures(parse(html)))
    assert "strip-tokens" in html


def test_no_lens_profile_still_renders(tiny_profile: dict[str, Any]) -> None:
    d = copy.deepcopy(tiny_profile)
    d["metrics"] = {k: v for k, v in d["metrics"].items() if not k.startswith("lens_")}
    d["prediction_depth"] = {}
    figs = figures(parse(build_report(Profile.from_dict(d), [])))
    assert "lens" not in figs and "prediction-depth" not in figs and "angular" in figs


@pytest.mark.usefixtures("no_pixels")
def test_captions_follow_the_numbers(tiny_profile: dict[str, Any]) -> None:
    d = copy.deepcopy(tiny_profile)
    d["metrics"]["rel_contrib_block"] = [0.9, 0.03, 0.04, 0.6]
    a = captions_of(build_report(Profile.from_dict(d), []))["rel-contrib"]
    assert "Blocks 1-2 each change it by less than 5%" in a and "Block 0" in a
    d["metrics"]["rel_contrib_block"] = [0.9, 0.6, 0.08, 0.07]
    b = captions_of(build_report(Profile.from_dict(d), []))["rel-contrib"]
    assert "Blocks 2-3 each change it by less than 10%" in b and a != b
    c1 = captions_of(build_report(Profile.from_dict(d), results("angular")))["cut-ppl"]
    assert "1 block: replaceme-ls, 23.00 (+15%)" in c1 and "2 blocks: last, 80.00 (+300%)" in c1
    rs = results()
    rs[0]["models"][1]["ppl"] = 21.0
    c2 = captions_of(build_report(Profile.from_dict(d), rs))["cut-ppl"]
    assert "1 block: angular, 21.00 (+5%)" in c2


def test_caption_functions_on_known_numbers() -> None:
    assert cap.longest_run_below([0.5, 0.03, 0.04, 0.02, 0.3, 0.01], 0.05) == (1, 3)
    assert cap.first_from([0.1, 0.6, 0.4, 0.7, 0.9], 0.5, above=True) == 3
    assert "half of the tokens have settled after 2 blocks" in cap.depth_caption(
        [0, 1, 5, 2, 2], 2.5, 4
    )
    assert "blocks 2, 3" in cap.influence_caption([0.5, 0.2, 0.01, 0.02], 2)
    s = cap.speed_caption([cap.CutRow("angular", 2, 30.0, 1.5, None, 2.0)])
    assert "×1.50 (one measurement, no interval" in s and "ideal (FLOP count) is ×2.00" in s


@pytest.mark.usefixtures("no_pixels")
def test_angular_mark_follows_the_plan(tiny_profile: dict[str, Any]) -> None:
    p = Profile.from_dict(tiny_profile)
    default = captions_of(build_report(p, []))["angular"]
    assert "cheapest span of n = 1" in default
    plan = {"kind": "depthlens.cut_plan", "method": "angular", "removed": [1, 2]}
    marked = captions_of(build_report(p, [plan]))["angular"]
    assert "plan's span (angular), blocks 1-2" in marked
    pruned = {"kind": "depthlens.pruned", "method": "block-influence", "removed": [0, 2]}
    scattered = captions_of(build_report(p, [pruned]))["angular"]
    assert "removes blocks 0, 2, which are not one contiguous span" in scattered


def write(path: Path, obj: Any) -> str:
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return str(path)


@pytest.mark.usefixtures("no_pixels")
def test_cli_writes_report_and_table(
    tiny_profile: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prof = write(tmp_path / "p.json", hostile(tiny_profile))
    extra = [write(tmp_path / f"{IMG_PAYLOAD}{i}.json", r) for i, r in enumerate(results())]
    out = tmp_path / "r.html"
    assert main(["report", prof, *extra, "-o", str(out), "--quiet"]) == 0
    html = out.read_text()
    assert set(figures(parse(html))) == PROFILE_PLOTS | EXTRA_PLOTS
    assert IMG_PAYLOAD not in html  # file names are escaped too
    assert f"{IMG_PAYLOAD}0.json".replace("<", "&lt;").replace(">", "&gt;") in html
    assert main(["report", prof, "-o", str(out)]) == 2  # exists, no --overwrite
    assert main(["report", prof, *extra, "-o", str(out), "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert "cheapest 1-block span" in captured.out and "best cut of 2" in captured.out
    assert f"wrote {out}" in captured.err


@pytest.mark.parametrize(
    "first, other, message",
    [
        ("{not json", None, "is not valid JSON"),
        ({"kind": "depthlens.compare", "models": []}, None, "not a depthlens profile"),
        ("PROFILE", {"kind": "something.else"}, "unknown result kind"),
        ("PROFILE", {"no": "kind"}, "unknown result kind"),
        ("PROFILE", [1, 2], "not of rows"),
        ("PROFILE", "PROFILE", "a second profile"),
        ("SHORT", None, "must be lists of 4"),
    ],
)
@pytest.mark.usefixtures("no_pixels")
def test_bad_input_is_one_line_exit_2(
    tiny_profile: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    first: Any,
    other: Any,
    message: str,
) -> None:
    def materialise(x: Any, name: str) -> str:
        if x == "PROFILE":
            x = tiny_profile
        elif x == "SHORT":
            x = copy.deepcopy(tiny_profile)
            x["metrics"]["cos_block"] = [0.1]
        return write(tmp_path / name, x)

    argv = ["report", materialise(first, "a.json")]
    if other is not None:
        argv.append(materialise(other, "b.json"))
    assert main([*argv, "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("depthlens: error:"), err
    assert message in err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.usefixtures("no_pixels")
def test_write_report_api(tiny_profile: dict[str, Any], tmp_path: Path) -> None:
    prof = write(tmp_path / "p.json", tiny_profile)
    path, rows = write_report([prof], tmp_path / "r.html")
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert rows[0] == ["model", "tiny-llama"]


@pytest.mark.usefixtures("no_pixels")
def test_real_plan_and_compare_results(tiny_profile: dict[str, Any]) -> None:
    """The JSON the cut and compare commands really write is drawn (no schema drift)."""
    from depthlens.cut import CutOptions, apply_cut_, plan_cut
    from depthlens.evaluate.compare import compare

    windows = random_windows()
    plan = plan_cut(wrap_tiny("llama"), windows, "angular", CutOptions(n=1))
    cut = wrap_tiny("llama")
    apply_cut_(cut, plan)
    speed = {"prompt_len": 8, "decode_tokens": 2, "repeats": 1}
    result = compare([("original", wrap_tiny("llama")), ("cut", cut)], windows, speed_options=speed)
    plan_json = json.loads(json.dumps(plan.to_dict()))
    html = build_report(
        Profile.from_dict(tiny_profile), [json.loads(json.dumps(result.to_dict())), plan_json]
    )
    figs = figures(parse(html))
    assert {"cut-ppl", "cut-speed"} <= set(figs)
    caps = captions_of(html)
    assert "1 block: angular" in caps["cut-ppl"]
    assert f"plan's span (angular), block {plan.removed[0]}" in caps["angular"]


@pytest.mark.usefixtures("no_pixels")
def test_real_skip_result_in_profile_extra(tiny_profile: dict[str, Any]) -> None:
    """`profile --causal` stores a SkipResult under extra["causal"]; both forms are drawn."""
    from depthlens.causal.skip import SkipOptions, skip_sweep

    eager = SkipOptions(lens_kernel="eager")  # the kernel is not what this test is about
    res = json.loads(
        json.dumps(
            skip_sweep(wrap_tiny("llama"), random_windows(), eager, progress=False).to_dict()
        )
    )
    d = copy.deepcopy(tiny_profile)
    d["extra"] = {"causal": res}
    for prof, extra in ((d, []), (tiny_profile, [res])):
        figs = figures(parse(build_report(Profile.from_dict(prof), extra)))
        assert {"skip-out-kl", "skip-future"} <= set(figs)
