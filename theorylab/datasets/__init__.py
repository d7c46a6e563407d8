"""Small data sets shipped with theorylab (read with :mod:`importlib.resources`, no download).

See ``README.md`` in this folder for the source, citation and licence status of each file.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

CHINCHILLA_FILE = "chinchilla_epoch_svg_extracted.csv"


def load_chinchilla(*, drop_highest: int = 5) -> pd.DataFrame:
    """The Chinchilla runs as extracted by Besiroglu et al. 2024 (Epoch AI) from Hoffmann et al. 2022, Fig. 4.

    Returns a DataFrame with columns ``N`` (parameters), ``C`` (training FLOP), ``D = C / (6 N)``
    (tokens) and ``loss``, in file order.  Epoch drops the ``drop_highest = 5`` highest-loss points
    before fitting (245 -> 240 rows); pass ``drop_highest=0`` to keep all of them.
    """
    if drop_highest < 0:
        raise ValueError(f"drop_highest must be >= 0, got {drop_highest}")
    with resources.files(__name__).joinpath(CHINCHILLA_FILE).open("r") as f:
        raw = pd.read_csv(f)
    table = pd.DataFrame({"N": raw["Model Size"].astype(float), "C": raw["Training FLOP"].astype(float),
                          "loss": raw["loss"].astype(float)})
    table.insert(2, "D", table["C"] / (6.0 * table["N"]))
    if drop_highest:
        keep = table["loss"].rank(method="first", ascending=False) > drop_highest
        table = table[keep]
    return table.reset_index(drop=True)
