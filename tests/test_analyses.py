"""Every claim of analyses/ runs at quick scale and yields honest, complete evidence.

The verdict itself is whatever the measurement says (a claim refuted at quick scale stays refuted);
what is tested is that the experiment runs, compares something, and draws its figure.
"""
import json

import pytest
import torch

from theorylab.claims import load_analyses, verify

REGISTRY = dict(load_analyses())


def test_the_suite_is_not_empty():
    assert len(REGISTRY) >= 3


@pytest.mark.parametrize("claim_id", sorted(REGISTRY))
def test_claim_runs_at_quick_scale(claim_id, tmp_path):
    claim = REGISTRY[claim_id]
    (evidence,) = verify([claim], scale="quick", out_dir=tmp_path, device=torch.device("cpu"), progress=None)
    assert evidence.verdict in ("confirmed", "refuted", "inconclusive"), evidence.notes
    assert evidence.checks and all(c["predicted"] for c in evidence.checks)
    assert evidence.predicted and evidence.measured
    assert (tmp_path / f"{claim_id}.png").exists()
    json.dumps(evidence.to_dict(), allow_nan=False)
    assert claim_id in (tmp_path / "REPORT.md").read_text()
