"""Claims: testable statements from papers, the experiments that test them, and the report.

* :mod:`~theorylab.claims.checks`: typed checks (precondition, tolerance, bound, effect) and the
  verdict rule;
* :mod:`~theorylab.claims.engine`: :func:`claim` registers a claim as a measurement, a judgement,
  a figure, a negative control and the mutations that must break it; :class:`Evidence`;
* :mod:`~theorylab.claims.suite`: :func:`load_analyses` (the claims shipped in
  :mod:`theorylab.analyses` and a user's own folders) and :func:`verify` (resumable runs, a record
  that only changes when a result does);
* :mod:`~theorylab.claims.report`: ``REPORT.md`` with both scales side by side;
* :mod:`~theorylab.claims.figures`: the figure conventions shared by every claim.
"""
from theorylab.claims.checks import (Check, bound, effect, mean_and_stderr, paired_difference, precondition,
                                     tolerance, undecided, verdict_of)
from theorylab.claims.engine import (REGISTRY, SCALES, Claim, Context, Evidence, Judgement, Mutation, Predictions,
                                     claim)
from theorylab.claims.suite import check_device, load_analyses, select, verify

__all__ = [
    "REGISTRY", "SCALES", "Check", "Claim", "Context", "Evidence", "Judgement", "Mutation", "Predictions", "bound",
    "check_device", "claim", "effect", "load_analyses", "mean_and_stderr", "paired_difference", "precondition",
    "select", "tolerance", "undecided", "verdict_of", "verify",
]
