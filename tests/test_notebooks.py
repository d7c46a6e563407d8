"""Every notebook is stored without outputs, runs from top to bottom (cwd notebooks/), prints the
measurements its text talks about, and shows every figure it makes.

Figures are counted in the kernel: a first cell (added here, not stored in the notebook) counts the
``matplotlib.figure.Figure`` objects created; every one must appear among the outputs exactly once,
as a PNG output or as an image embedded in a Result's HTML view.  A figure that is made but never
shown is the failure of a plotting helper that disturbs the inline backend's interactive mode.
"""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED_TEXT = {
    "hessian_spectrum": ["top-5:", "trace (Hutch++)", "lambda_max", "extremal Ritz values"],
    "ntk_and_sharpness": ["relative Frobenius error", "kernel distance to init", "lambda_max", "eta tr(H) / 2"],
    "collapse_and_gradients": ["normalised coherence", "first step with zero training error"],
    "double_descent": ["peak at n = ", "peak at N = ", "early-stopped", "half-way"],
    "scaling_laws": ["Objective 0.001018274018", "alpha: 95% CI", "approach 3 a = 0.514"],
    "real_models": ["GPT-2 top-3 Hessian eigenvalues", "tied: lm_head.weight", "per-block lambda_max",
                    "NTK on the last token", "ViT: test accuracy", "effective rank per token"],
    "landscape_and_fisher": ["Fisher = GGN: relative difference", "K-FAC relative error", "CG: damping",
                             "curvature along the top eigenvector", "after weight matching"],
}
COUNT_FIGURES = """\
import matplotlib.figure
_figures_made = [0]
_figure_init = matplotlib.figure.Figure.__init__
def _counting_init(self, *args, **kwargs):
    _figure_init(self, *args, **kwargs)
    _figures_made[0] += 1
matplotlib.figure.Figure.__init__ = _counting_init
"""
REPORT_FIGURES = "print('figures made:', _figures_made[0])"


def test_every_notebook_is_covered():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED_TEXT)


def images_shown(outputs: list) -> int:
    """PNG outputs plus PNG images embedded in HTML outputs (a Result's view)."""
    data = [o.get("data", {}) for o in outputs if o.output_type in ("display_data", "execute_result")]
    return sum("image/png" in d for d in data) + sum(d.get("text/html", "").count("data:image/png") for d in data)


@pytest.mark.parametrize("name", sorted(EXPECTED_TEXT))
def test_notebook_is_stripped_executes_and_shows_every_figure(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    nb.cells = [nbformat.v4.new_code_cell(COUNT_FIGURES), *nb.cells, nbformat.v4.new_code_cell(REPORT_FIGURES)]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for snippet in EXPECTED_TEXT[name]:
        assert snippet in text, snippet
    made = int(text.rsplit("figures made:", 1)[1].split()[0])
    assert made >= 1
    assert images_shown(outputs) == made, f"{name}: {images_shown(outputs)} images shown for {made} figures made"
