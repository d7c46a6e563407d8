"""The claims shipped with theorylab: one module per paper or topic, each registering its claims with
:func:`theorylab.claims.claim` (``theorylab verify --list`` shows them).  Modules here hold the
experiments and judgements only; the library logic lives in theorylab, the predictions in
:mod:`theorylab.theory` or :mod:`theorylab.fits`.
"""
