"""The house style is applied to theorylab's figures only; matplotlib's global state is left alone."""
import os
import subprocess
import sys

import matplotlib
import matplotlib.pyplot as plt

from theorylab.plotting import STYLE, close, new_figure, save_figure


def test_new_figure_leaves_rcparams_and_interactive_mode_alone():
    before = dict(matplotlib.rcParams)
    was_interactive = matplotlib.is_interactive()
    plt.ion()
    try:
        fig, axes = new_figure(2)
        assert matplotlib.is_interactive()
        assert {k: v for k, v in matplotlib.rcParams.items() if k != "interactive"} == \
            {k: v for k, v in before.items() if k != "interactive"}
        assert fig.number in plt.get_fignums()  # made through pyplot: Jupyter and plt.show() see it
        assert fig.dpi == STYLE["figure.dpi"]
        assert not axes[0].spines["top"].get_visible() and axes[0].xaxis.get_gridlines()[0].get_visible()
        _, user_ax = plt.subplots()  # the user's own figure after ours: matplotlib's defaults
        assert user_ax.spines["top"].get_visible()
        plt.close(user_ax.figure)
        close(fig)
    finally:
        matplotlib.interactive(was_interactive)


def test_save_figure_is_byte_stable(tmp_path):
    paths = []
    for run in ("a", "b"):
        fig, ax = new_figure()
        ax.plot([1, 2, 3], [2, 1, 3], label="x")
        ax.legend()
        paths.append(save_figure(fig, tmp_path / run / "fig"))
        close(fig)
    for first, second in zip(*paths):
        assert first.read_bytes() == second.read_bytes(), first.name


FAKE_INLINE_BACKEND = """\
import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvas
matplotlib.interactive(True)  # as Jupyter's inline backend does when the kernel activates it
"""


def test_interactive_mode_survives_the_first_figure_of_a_session(tmp_path):
    """The backend is resolved on the first figure; its interactive mode must outlive new_figure."""
    (tmp_path / "fake_inline.py").write_text(FAKE_INLINE_BACKEND)
    env = {**os.environ, "MPLBACKEND": "module://fake_inline", "PYTHONPATH": str(tmp_path)}
    code = ("import matplotlib; from theorylab.plotting import new_figure; new_figure(); "
            "print(matplotlib.is_interactive())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
