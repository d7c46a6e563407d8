"""Long operations show a progress bar when asked (or in interactive use) and nothing otherwise."""
import numpy as np
import torch
from sweep_workloads import numpy_run
from torch import nn

from theorylab.fits import fit
from theorylab.models import MLP
from theorylab.progress import progress
from theorylab.sweep import grid, sweep
from theorylab.train import train



def _train(**kwargs):
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    return train(MLP(4, [8], 3, seed=0), nn.CrossEntropyLoss(), (x, y), steps=5, lr=0.1, **kwargs)


def test_training_bootstrap_and_sweeps_show_bars_only_when_enabled(capsys):
    x = np.logspace(1, 4, 20)
    res = fit({"x": x, "loss": 0.3 + 4 * x ** -0.6}, "power", grid_size=100, polish=1)
    _train()
    res.bootstrap(4, seed=0)
    sweep(numpy_run, grid(seed=[0], n=[4]))
    assert capsys.readouterr().err == ""  # off under pytest by default
    with progress(True):
        _train()
        res.bootstrap(4, seed=0)
        sweep(numpy_run, grid(seed=[0], n=[4]))
    err = capsys.readouterr().err
    assert "train" in err and "/5 " in err
    assert "bootstrap" in err and "sweep" in err
    _train(progress=True)
    assert "train" in capsys.readouterr().err
