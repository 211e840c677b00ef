"""The report in a real headless Chromium, offline: plots load, no console errors, inert payloads.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); the binary can also be
named with ``DEPTHLENS_CHROMIUM``. Without it every test here is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_report import IMG_PAYLOAD, SCRIPT_PAYLOAD, hostile, results, tiny_profile  # noqa: F401

from depthlens.profiling.result import Profile
from depthlens.report import build_report

# e2e: a real Chromium process. In-process twins (HTML parsed in Python): test_report.py's
# test_hostile_strings_are_never_live and test_no_external_urls.
pytestmark = [pytest.mark.browser, pytest.mark.e2e]

# Chromium resolves nothing and proxies everything to a closed port: no request can leave.
OFFLINE_FLAGS = [
    "--headless",
    "--disable-gpu",
    "--no-sandbox",  # CI runs as root
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--enable-logging=stderr",
    "--v=0",
    "--log-level=0",
    "--hide-scrollbars",
]

# Test-only instrumentation, put first in <head> of a copy with the CSP removed: records
# any dialog or error, so the escaping is shown to hold without the CSP safety net.
PROBE = """<script>
(function () {
  var root = document.documentElement;
  function note(kind) {
    return function () { root.dataset[kind] = (root.dataset[kind] || "") + "x"; };
  }
  window.alert = note("alerts"); window.confirm = note("alerts"); window.prompt = note("alerts");
  window.addEventListener("error", note("errors"), true);
  window.addEventListener("load", function () {
    root.dataset.imgX = String(document.querySelectorAll("img[src=x]").length);
    root.dataset.scripts = String(document.scripts.length);
    root.dataset.svg = String(document.querySelectorAll("svg").length);
  });
})();
</script>"""


def chromium() -> str:
    """Path of a Chromium binary, or skip with the reason."""
    for name in (
        os.environ.get("DEPTHLENS_CHROMIUM"),
        "chromium",
        "chromium-browser",
        "google-chrome",
        "chrome",
    ):
        if name and (path := shutil.which(name)):
            try:
                subprocess.run([path, "--version"], capture_output=True, timeout=60, check=True)
            except (OSError, subprocess.SubprocessError) as exc:
                pytest.skip(f"chromium not available: {path} --version failed ({exc})")
            return path
    pytest.skip("chromium not available: not on PATH (apt-get install -y chromium)")


def no_network_prefix() -> list[str]:
    """Run in an empty network namespace as well, where the kernel allows it."""
    if shutil.which("unshare"):
        ok = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
        if ok.returncode == 0:
            return ["unshare", "-n"]
    return []


def run_chromium(page: Path, tmp: Path, *extra: str) -> tuple[str, str]:
    """(stdout, stderr) of headless Chromium on a file:// URL."""
    cmd = [
        *no_network_prefix(),
        chromium(),
        *OFFLINE_FLAGS,
        f"--user-data-dir={tmp / 'chrome-profile'}",
        *extra,
        page.as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    return res.stdout, res.stderr


def console_lines(stderr: str) -> list[str]:
    """Console messages, uncaught errors and CSP refusals Chromium logged."""
    return [
        l for l in stderr.splitlines() if ":CONSOLE" in l or "Uncaught" in l or "Refused to" in l
    ]


def attr(dom: str, tag: str, name: str) -> str | None:
    m = re.search(rf"<{tag}\b[^>]*\b{name}=\"([^\"]*)\"", dom)
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def report_html(tiny_profile: dict[str, Any]) -> str:  # noqa: F811
    return build_report(Profile.from_dict(hostile(tiny_profile)), results())


def test_report_renders_offline_with_every_plot(report_html: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(report_html, encoding="utf-8")
    expected = report_html.count('<figure class="plot"')
    dom, err = run_chromium(page, tmp_path, "--dump-dom", "--virtual-time-budget=5000")
    assert attr(dom, "body", "data-plots-expected") == str(expected), dom[:500]
    assert attr(dom, "body", "data-plots") == str(expected)  # every image decoded, non-empty
    assert "broken" not in re.findall(r'<figure class="([^"]*)"', dom)
    assert console_lines(err) == []
    shot = tmp_path / "report.png"
    _, err = run_chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1000,2400")
    assert shot.is_file() and shot.read_bytes().startswith(b"\x89PNG")
    assert shot.stat().st_size > 20_000
    assert console_lines(err) == []


def test_payloads_stay_inert_even_without_csp(report_html: str, tmp_path: Path) -> None:
    naked = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", report_html)
    assert naked != report_html
    naked = naked.replace("<head>", "<head>" + PROBE, 1)
    page = tmp_path / "naked.html"
    page.write_text(naked, encoding="utf-8")
    dom, err = run_chromium(page, tmp_path, "--dump-dom", "--virtual-time-budget=5000")
    root = re.search(r"<html\b[^>]*>", dom)
    assert root, dom[:300]
    html_tag = root.group(0)
    assert 'data-img-x="0"' in html_tag, html_tag
    assert 'data-scripts="2"' in html_tag  # the probe and the report's own script
    assert 'data-svg="0"' in html_tag
    assert "data-alerts" not in html_tag and "data-errors" not in html_tag, html_tag
    assert console_lines(err) == []
    # The payloads made it into the page as text.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert SCRIPT_PAYLOAD not in dom and IMG_PAYLOAD not in dom
