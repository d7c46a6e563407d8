"""Example Results and their HTML views, for the structure test and for looking at them.

``python tests/html_views.py OUT_DIR`` writes one page per view into OUT_DIR (each inside a copy of
the JupyterLab rules that matter for tables and images: centred fixed-layout tables, right-aligned
cells, striped rows, images capped at the output width) and, where the ``chromium`` browser is
installed, a screenshot of each page (``--screenshot`` of headless Chromium).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

# the rules of JupyterLab's rendered-HTML stylesheet that change how tables and images look
JUPYTERLAB_CSS = """
body { margin: 0; background: white; }
.jp-OutputArea-output { width: 940px; padding: 12px 16px; }
.jp-RenderedHTMLCommon { font-family: system-ui, sans-serif; font-size: 14px; line-height: 1.28; }
.jp-RenderedHTMLCommon table { border-collapse: collapse; border-spacing: 0; border: none; font-size: 12px;
  table-layout: fixed; margin-left: auto; margin-right: auto; }
.jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th, .jp-RenderedHTMLCommon tr { text-align: right;
  vertical-align: middle; padding: 0.5em; line-height: normal; white-space: normal; max-width: none; border: none; }
.jp-RenderedHTMLCommon tbody tr:nth-child(odd) { background: #f5f5f5; }
.jp-RenderedHTMLCommon img { max-width: 100%; }
"""


def example_results() -> dict:
    """A few Results of each kind, small enough to build in seconds."""
    import theorylab as tl
    from theorylab.datasets import load_chinchilla
    from theorylab.fits import fit
    from theorylab.models import MLP
    from theorylab.train import train

    torch.manual_seed(0)
    x, y = torch.randn(96, 8, dtype=torch.float64), torch.randint(0, 3, (96,))
    model = MLP(8, [16], 3, seed=0).double()
    loss = nn.CrossEntropyLoss()
    history = train(model, loss, (x, y), steps=30, lr=0.3)
    H = tl.hessian(model, loss, (x, y))
    chin = fit(load_chinchilla(), "chinchilla")
    rng = np.random.default_rng(0)
    N, D = 10 ** rng.uniform(7, 10, 10_000), 10 ** rng.uniform(9, 12, 10_000)
    big = {"N": N, "D": D, "loss": (1.8 + 480 * N ** -0.35 + 2100 * D ** -0.37) * np.exp(0.01 * rng.normal(size=N.size))}
    kaplan_n = np.logspace(5, 9.2, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suspect = fit({"N": kaplan_n, "loss": (8.8e13 / kaplan_n) ** 0.076}, "(Nc/N)**alpha", bounds={"alpha": (0.1, 1)})
    return {
        "FitResult_chinchilla": chin,
        "FitResult_10000_rows": fit(big, "chinchilla"),
        "FitResult_suspect": suspect,
        "BootstrapResult": chin.bootstrap(40, seed=0),
        "ComputeOptimal": chin.compute_optimal([1e21, 1e23, 1e25]),
        "TraceEstimate": tl.trace(H, num_probes=30, seed=0),
        "EigenResult": tl.top_eigenvalues(H, k=4, seed=0),
        "SpectralDensity": tl.spectral_density(H, num_steps=20, num_probes=3, seed=0),
        "Sharpness": tl.sam_sharpness(model, loss, (x, y), rho=0.05),
        "TrainResult": history,
    }


def page(name: str, view: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title><style>{JUPYTERLAB_CSS}</style>"
            f"</head><body><div class='jp-OutputArea-output jp-RenderedHTMLCommon'>{view}</div></body></html>")


def main(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    for name, result in example_results().items():
        view = result._repr_html_()
        html_path = out / f"{name}.html"
        html_path.write_text(page(name, view))
        print(f"{name:24s} {len(view) / 1024:6.1f} KiB", end="")
        if browser:
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--screenshot={out / f'{name}.png'}", "--window-size=980,760",
                            html_path.resolve().as_uri()], capture_output=True, check=True, timeout=120)
            print(f"  -> {name}.png", end="")
        print()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "html_views"))
