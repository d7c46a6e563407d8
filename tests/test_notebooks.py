"""Every notebook is stored without outputs, runs from top to bottom (cwd notebooks/), and prints
the measurements its text talks about."""
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
    "landscape_and_fisher": ["Fisher = GGN: relative difference", "K-FAC relative error", "CG: damping",
                             "curvature along the top eigenvector", "after weight matching"],
    "grokking_probes": ["test accuracy at the end", "Fourier concentration per unit", "softmax-collapsed fraction",
                        "CKA to the final representation", "EL2N at initialisation"],
}


def test_every_notebook_is_covered():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED_TEXT)


@pytest.mark.parametrize("name", sorted(EXPECTED_TEXT))
def test_notebook_is_stripped_and_executes(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for snippet in EXPECTED_TEXT[name]:
        assert snippet in text, snippet
