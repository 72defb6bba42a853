"""Every notebook opens in JupyterLab as it is stored: nothing for JupyterLab to rewrite.

* saving changes no byte: the file is what the server writes (``nbformat.write``: sorted keys,
  indent 1, ``ensure_ascii=False``, a trailing newline), so opening and saving a notebook leaves
  ``git diff`` empty;
* the kernelspec is the course kernel's, the one ``make lab`` registers: JupyterLab starts it
  without asking, and does not rewrite the kernelspec to another kernel's (which marks the
  notebook modified on opening);
* no widget state: JupyterLab does not restore ``metadata.widgets``, and a stored widget view has
  no model once the kernel runs ("Error displaying widget: model not found"). ``make notebooks``
  strips both (``dsm_ref.viz.strip_widget_outputs``); the static figure after a widget is its
  offline view.
"""

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
COURSE_KERNELSPEC = {"name": "dsm-course", "display_name": "DSM course (dsm_ref)",
                     "language": "python"}
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def _read(path: Path):
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 8


def test_make_lab_registers_the_course_kernelspec():
    makefile = (REPO / "Makefile").read_text()
    name = re.search(r"^KERNEL_NAME\s*:?=\s*(\S+)", makefile, re.MULTILINE)
    display = re.search(r'--display-name "([^"]+)"', makefile)
    assert name and name.group(1) == COURSE_KERNELSPEC["name"]
    assert display and display.group(1) == COURSE_KERNELSPEC["display_name"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saving_in_jupyterlab_changes_no_byte(path, tmp_path):
    nb = _read(path)
    nbformat.validate(nb)
    saved = tmp_path / path.name
    nbformat.write(nb, saved)
    assert saved.read_bytes() == path.read_bytes(), (
        f"{path.name} is not stored as JupyterLab saves it; rewrite it with nbformat.write "
        "(or json.dump(nb, f, indent=1, sort_keys=True, ensure_ascii=False) and a newline)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_kernelspec_is_the_course_kernel(path):
    assert dict(_read(path).metadata.get("kernelspec", {})) == COURSE_KERNELSPEC


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_widget_state_is_stored(path):
    nb = _read(path)
    assert "widgets" not in nb.metadata, f"{path.name} stores metadata.widgets"
    views = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             for output in cell.outputs if WIDGET_VIEW_MIME in output.get("data", {})]
    assert not views, f"{path.name} stores widget views in cells {views}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_stays_under_2_mb(path):
    """Clones and diffs stay quick: figures are stored as compact PNGs
    (``dsm_ref.viz.use_compact_retina_png``), not one per slider position."""
    size = path.stat().st_size
    assert size < 2_000_000, f"{path.name} is {size / 1e6:.2f} MB"
