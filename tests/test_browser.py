"""The widget notebooks as a learner meets them: JupyterLab in headless Chromium (Playwright).

For each notebook: JupyterLab opens it with the course kernel without marking it modified and
without "Error displaying widget"; Run All Cells runs it without a traceback; then every handle
of every ipywidgets slider is dragged, and the image the slider drives must change within
``UPDATE_BUDGET_MS`` (a new PNG decoded in the page, timed in the browser from the mouse-up).
The photo's panels must not be shrunk (one image pixel per CSS pixel or more), the two handles of
a range slider must not overlap at the start, and the browser console must stay free of errors.
The timings (median and max per slider move) are printed.

Marker ``browser``: ``make browser`` (part of ``make test``) runs these alone, after the other
tests, so that the timings are not taken on cores busy with other workers. They are skipped,
with the reason, when Playwright (the ``test`` extra) or a Chromium binary (``apt-get install
chromium``; ``$DSM_CHROMIUM`` names another) is missing, unless ``DSM_BROWSER_TESTS=require``
(CI) makes that a failure. ``playwright install`` is never needed: the system's Chromium is used.

The server runs on 127.0.0.1 on a free port with a random token, on temporary copies of the
notebooks under test (nothing is written back), with the course kernel registered as ``make
lab`` does (``ipykernel install --user``) but into a temporary Jupyter data dir: the user's
Jupyter and JupyterLab config, settings, workspaces and kernels are not touched.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["02_spectrum_interactive.ipynb", "04_block_and_models.ipynb"]
KERNEL_NAME = "dsm-course"
KERNEL_DISPLAY_NAME = "DSM course (dsm_ref)"
UPDATE_BUDGET_MS = 1000.0
SERVER_START_S = 120
RUN_ALL_S = 600  # notebook 04 takes about a minute on one busy core
VIEWPORT = {"width": 1280, "height": 900}  # a laptop screen, the file browser open
# A code cell that builds a widget: dsm_ref.viz's *_widget builders, or ipywidgets' interact.
WIDGET_CALL = re.compile(r"\b\w+_widget\(|\binteract(?:ive)?\(")
ERROR_TEXT = "Error displaying widget"
# The widgets of a notebook: dsm_ref.viz's panel widgets (sliders above an Image widget), or
# ipywidgets' interact (sliders above an Output widget). Each shows one image.
WIDGETS = ".jp-NotebookPanel :is(.dsm-panels-widget, .widget-interact)"


def _chromium() -> str | None:
    for candidate in (os.environ.get("DSM_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[course,test]')"
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return "jupyterlab is not installed (the course extra)"
    if _chromium() is None:
        return ("no Chromium binary on PATH (apt-get install chromium, or set DSM_CHROMIUM); "
                "`playwright install` is not used")
    return None


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen
    timings: dict[str, list[float]] = field(default_factory=dict)  # per notebook, ms

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("DSM_BROWSER_TESTS") == "require":
            pytest.fail(f"DSM_BROWSER_TESTS=require, but {reason}")
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    for name in NOTEBOOKS:
        shutil.copy2(REPO / "notebooks" / name, root / name)
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
        IPYTHONDIR=str(tmp / "ipython"),
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
        MKL_NUM_THREADS=os.environ.get("MKL_NUM_THREADS", "1"),
    )
    env.pop("MPLBACKEND", None)  # the kernel's figures go through the inline backend
    env.pop("JUPYTER_PATH", None)
    # `make lab` registers the course kernel with --user; here --user is the temporary data dir.
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--user", "--name", KERNEL_NAME,
         "--display-name", KERNEL_DISPLAY_NAME],
        env=env, check=True, capture_output=True,
    )
    # No "get notified about Jupyter news?" toast over the notebook, no request to the internet.
    notification = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.name == "posix" and os.getuid() == 0:
        command.append("--allow-root")
    log = tmp / "jupyterlab.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   cwd=tmp)
    server = Lab(f"http://127.0.0.1:{port}", token, root, log, process)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode}:\n{server.log_tail()}")
            try:
                urllib.request.urlopen(f"{server.url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in {SERVER_START_S} s:\n"
                                f"{server.log_tail()}")
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=_chromium(), headless=True, args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


def _timing_line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: no sliders"
    return (f"{name}: {len(values)} slider moves, image updated after median "
            f"{statistics.median(values):.0f} ms, max {max(values):.0f} ms "
            f"(budget {UPDATE_BUDGET_MS:.0f} ms)")


def _widget_cells(name: str) -> int:
    nb = json.loads((REPO / "notebooks" / name).read_text(encoding="utf-8"))
    return sum(1 for c in nb["cells"]
               if c["cell_type"] == "code" and WIDGET_CALL.search("".join(c["source"])))


# JavaScript run in the page.
NOTEBOOK_TEXT = "() => document.querySelector('.jp-NotebookPanel .jp-Notebook').textContent"
# A folded input (a solution cell) shows an empty placeholder prompt instead of its count.
PROMPTS = """() => [...document.querySelectorAll(
    '.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt:not(.jp-Placeholder-prompt)')]
    .map(p => p.textContent.trim())"""
STDERR_TEXT = """() => [...document.querySelectorAll(
    '.jp-NotebookPanel .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(o => o.textContent).join('\\n')"""
KERNEL_NAME_SHOWN = """() => {
    const name = document.querySelector('.jp-NotebookPanel .jp-Toolbar-kernelName');
    return name === null ? null : name.textContent.trim();
}"""
KERNEL_IDLE = """() => {
    const indicator = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
    return indicator !== null && indicator.dataset.status === 'idle';
}"""
# Arms a watch on one interact widget: the time of the next mouse-up, and the time at which an
# image with a new src is decoded in the widget's output.
ARM_WATCH = """(widget) => {
    const current = () => { const img = widget.querySelector('img');
                            return img ? img.src : null; };
    const watch = {up: null, changed: null, old: current()};
    window.__dsmWatch = watch;
    document.addEventListener('mouseup', () => { watch.up = performance.now(); },
                              {capture: true, once: true});
    const observer = new MutationObserver(() => {
        const img = widget.querySelector('img');
        if (watch.changed === null && img && img.src && img.src !== watch.old) {
            observer.disconnect();
            watch.changed = -1;
            img.decode().catch(() => null).then(() => { watch.changed = performance.now(); });
        }
    });
    observer.observe(widget, {subtree: true, childList: true, attributes: true,
                              attributeFilter: ['src']});
}"""


def _wait_idle(page, timeout_s: float) -> None:
    page.wait_for_function(KERNEL_IDLE, timeout=timeout_s * 1000)


def _run_all(page, name: str) -> None:
    """Run > Run All Cells, then waits until every code cell has its execution count and the
    kernel is idle; fails early (with the prompts) when the kernel idles with cells left."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
    # Every cell is queued at once; the last shows [*] until the end.
    page.wait_for_function(f"() => ({PROMPTS})().some(p => p.includes('*'))", timeout=30_000)
    deadline, idle_since = time.monotonic() + RUN_ALL_S, None
    while True:
        prompts, idle = page.evaluate(PROMPTS), page.evaluate(KERNEL_IDLE)
        if prompts and all(re.fullmatch(r"\[\d+\]:?", p) for p in prompts) and idle:
            return
        idle_since = (idle_since or time.monotonic()) if idle else None
        if idle_since is not None and time.monotonic() - idle_since > 10:
            raise AssertionError(f"{name}: the kernel is idle, but not every cell ran: {prompts}"
                                 f"\n{page.evaluate(STDERR_TEXT)[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: Run All Cells took over {RUN_ALL_S} s: {prompts}")
        page.wait_for_timeout(250)


def _settled_box(page, locator) -> dict:
    """The bounding box of ``locator`` once it stops moving (the notebook may be scrolling)."""
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    for _ in range(50):
        page.wait_for_timeout(50)
        again = locator.bounding_box()
        if again == box:
            return box
        box = again
    return box


def _grab(page, slider, handle) -> dict:
    """Where to grab ``handle``, once it stays put. A click on the slider's description first
    makes its cell the active one: activating a cell can scroll the notebook, which must not
    happen between mouse-down and mouse-up."""
    slider.locator(".widget-label").first.click()
    return _settled_box(page, handle)


def _drag(page, box: dict, dx: float) -> None:
    """Drags what is at the centre of ``box`` by ``dx`` CSS pixels, as a learner does."""
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y, steps=3)
    page.mouse.move(x + dx, y, steps=3)
    page.mouse.up()


def _overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]


def _check_panels_unscaled(widget, label: str) -> None:
    """The widget's figure is shown at its own size or larger: a 2x PNG at >= half its pixels
    (the photo's panels are 1:1 in the figure), never shrunk to fit the page."""
    size = widget.locator("img").first.evaluate(
        "img => ({shown: img.getBoundingClientRect().width, natural: img.naturalWidth})"
    )
    assert size["shown"] >= size["natural"] / 2 - 1, (
        f"{label}: the figure is shown {size['shown']:.0f} px wide, its 2x PNG is "
        f"{size['natural']} px: shrunk"
    )


def _move_sliders(page, widget, label: str) -> list[float]:
    """Drags every handle of every slider of one interact widget by a quarter of its track;
    returns the ms from each mouse-up to the new image, asserting each within the budget."""
    times = []
    sliders = widget.locator(".widget-slider")
    assert sliders.count() > 0, f"{label} has no slider"
    for s in range(sliders.count()):
        slider = sliders.nth(s)
        where = f"{label}, slider {slider.locator('.widget-label').first.text_content()!r}"
        handles = slider.locator(".noUi-handle")
        boxes = [handles.nth(h).bounding_box() for h in range(handles.count())]
        if len(boxes) == 2:
            assert not _overlap(*boxes), f"{where}: the two handles overlap at the start"
        readout = slider.locator(".widget-readout").first
        for h in range(handles.count()):
            before = readout.text_content()
            box = _grab(page, slider, handles.nth(h))
            track = slider.locator(".noUi-target").first.bounding_box()
            room_right = track["x"] + track["width"] - (box["x"] + box["width"] / 2)
            dx = 0.25 * track["width"] * (1 if room_right > track["width"] / 2 else -1)
            widget.evaluate(ARM_WATCH)
            _drag(page, box, dx)
            try:
                page.wait_for_function("() => window.__dsmWatch.changed > 0",
                                       timeout=10_000, polling=20)
            except Exception as error:  # playwright's TimeoutError
                raise AssertionError(f"{where}, handle {h}: no new image in 10 s") from error
            watch = page.evaluate("() => window.__dsmWatch")
            elapsed = watch["changed"] - watch["up"]
            times.append(elapsed)
            assert readout.text_content() != before, f"{where}, handle {h}: the value did not move"
            assert elapsed <= UPDATE_BUDGET_MS, (
                f"{where}, handle {h}: the image changed {elapsed:.0f} ms after the slider "
                f"moved (budget {UPDATE_BUDGET_MS:.0f} ms)"
            )
            _wait_idle(page, 30)
    return times


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_widgets_in_jupyterlab(lab, browser, name, capsys):
    expected_widgets = _widget_cells(name)
    console_errors: list[str] = []
    page = browser.new_page(viewport=VIEWPORT)
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(f"page error: {e}"))
    started = time.perf_counter()
    try:
        # Opened as stored: the course kernel, no widget error, not modified by JupyterLab.
        page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}&reset")
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
        try:
            page.wait_for_function(f"() => ({KERNEL_NAME_SHOWN})() === {KERNEL_DISPLAY_NAME!r}",
                                   timeout=120_000)
        except Exception as error:  # playwright's TimeoutError
            shown = page.evaluate(KERNEL_NAME_SHOWN)
            raise AssertionError(f"{name} opened with the kernel {shown!r}") from error
        _wait_idle(page, 120)
        page.wait_for_timeout(1000)  # widget restoration from the kernel, if any
        assert ERROR_TEXT not in page.evaluate(NOTEBOOK_TEXT), f"{name} as stored: {ERROR_TEXT}"
        dirty = page.locator(".lm-TabBar-tab.jp-mod-dirty").count()
        assert dirty == 0, f"JupyterLab changed {name} on opening it (the tab is marked modified)"
        opened = time.perf_counter()

        # Run All Cells: no traceback, every widget rendered with its image.
        _run_all(page, name)
        ran = time.perf_counter()
        text = page.evaluate(NOTEBOOK_TEXT)
        assert "Traceback (most recent call last)" not in text, f"{name} raised:\n{text[-3000:]}"
        page.wait_for_function(
            """([selector, n]) => { const w = document.querySelectorAll(selector);
                return w.length === n && [...w].every(e => e.querySelector('img') !== null); }""",
            arg=[WIDGETS, expected_widgets], timeout=60_000,
        )

        # Every slider moved: a new image within the budget each time.
        times = lab.timings.setdefault(name, [])
        widgets = page.locator(WIDGETS)
        for w in range(widgets.count()):
            widget, label = widgets.nth(w), f"{name}, widget {w}"
            _check_panels_unscaled(widget, label)
            times += _move_sliders(page, widget, label)
            _check_panels_unscaled(widget, f"{label} after moving its sliders")
        assert ERROR_TEXT not in page.evaluate(NOTEBOOK_TEXT), f"{name}: {ERROR_TEXT}"
        assert not console_errors, f"browser console errors with {name}:\n" + "\n".join(
            console_errors)
        finished = time.perf_counter()
        with capsys.disabled():
            print(f"\n{_timing_line(name, times)}; opened in {opened - started:.1f} s, "
                  f"ran in {ran - opened:.1f} s, sliders moved in {finished - ran:.1f} s")
    except Exception:
        shot = lab.root.parent / f"{name}.png"
        page.screenshot(path=str(shot))
        sys.stderr.write(f"\nscreenshot: {shot}\nJupyterLab log:\n{lab.log_tail()}\n")
        raise
    finally:
        page.close()
