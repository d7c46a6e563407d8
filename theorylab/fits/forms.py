"""Functional forms of scaling laws, each a sympy expression with exact derivatives.

A :class:`Form` is a law ``y = f(x; p)`` in its input ``variables`` and ``params``.  The expression
is kept symbolically (for display and for exact gradients) and compiled once with
``sympy.lambdify`` into numpy functions for the prediction and its Jacobian in the parameters.

Each parameter has an optimiser coordinate: ``log`` for parameters that must be positive
(``p = exp(theta)``, as in Hoffmann et al. 2022 who fit ``a = log A``, ``e = log E``) or the
natural value, and a range of starting values.  ``linear`` parameters enter the law linearly with
a non-negative coefficient (``f = phi_0 + sum_j c_j phi_j(x; exponents)``), so variable projection
can solve them by non-negative least squares and search only the remaining exponents.

The built-in forms:

* :func:`power`: ``y = E + A x^-alpha`` (L(N), L(D), L(C), learning curves; Hestness et al. 2017).
* :func:`chinchilla`: ``L = E + A / N^alpha + B / D^beta`` (Hoffmann et al. 2022, eq. 2 / approach 3).
* :func:`kaplan`: ``L = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D`` (Kaplan et al. 2020, eq. 1.5).
* :func:`broken`: ``y = a + b x^-c0 prod_i (1 + (x / d_i)^(1 / f_i))^(-c_i f_i)`` with ``k`` breaks
  (Caballero et al. 2023, eq. 1).
* :func:`annealing`: ``L = L0 + A S1^-alpha - C S2`` (Tissue et al. 2024, eq. 1) in the annealing
  features S1 (area under the learning rate) and S2 (momentum-smoothed annealing area); see
  :func:`annealing_features`.
* :func:`expression`: any law typed by the user, parsed safely (:mod:`theorylab.fits.expressions`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import sympy as sp

from theorylab.fits.expressions import parse_expression

Ranges = dict[str, tuple[float, float]]


class Form:
    """A law ``y = f(variables; params)``.

    ``positive``: parameters optimised in log coordinates (they must be > 0).  ``linear``: positive
    parameters that enter linearly (solved by NNLS in variable projection).  ``ranges``: the box of
    starting values of each parameter *in optimiser coordinates* (log for positive ones); a
    callable ``(X, y) -> Ranges`` when the box depends on the data.  ``positive_variables``: the
    inputs that must be > 0 (default all).  ``decreasing``: the variables in which the law is meant
    to decrease (a scaling law's loss falls with model size and data); None when the form does not
    say, and the fit then compares the law's slopes with the data's trend.  ``spec`` rebuilds the
    form with :func:`make_form` (it is what a saved result stores).
    """

    def __init__(self, name: str, expr: sp.Expr, variables: Sequence[str], params: Sequence[str], *,
                 positive: Sequence[str] = (), linear: Sequence[str] = (),
                 ranges: Ranges | Callable[[Mapping[str, np.ndarray], np.ndarray], Ranges] | None = None,
                 spec: dict[str, Any] | None = None, positive_variables: Sequence[str] | None = None,
                 decreasing: Sequence[str] | None = None):
        self.name = name
        self.decreasing = None if decreasing is None else tuple(decreasing)
        self.expr = expr
        self.variables = tuple(variables)
        self.params = tuple(params)
        self.positive = frozenset(positive)
        #: variables that must be > 0 (those raised to fitted powers)
        self.positive_variables = self.variables if positive_variables is None else tuple(positive_variables)
        self.linear = tuple(linear)
        self.spec = dict(spec or {"form": name})
        self._ranges = ranges
        unknown = (set(self.positive) | set(self.linear)) - set(self.params)
        if unknown:
            raise ValueError(f"form {name}: {sorted(unknown)} are not parameters of the form")
        if not set(self.linear) <= self.positive:
            raise ValueError(f"form {name}: linear parameters must be positive (non-negative coefficients)")
        symbols = [sp.Symbol(s, real=True) for s in self.variables + self.params]
        psyms = symbols[len(self.variables):]
        self._value = sp.lambdify(symbols, expr, modules="numpy", cse=True)
        self._jac = sp.lambdify(symbols, [sp.diff(expr, p) for p in psyms], modules="numpy", cse=True)
        vsyms = symbols[: len(self.variables)]
        self._slopes = sp.lambdify(symbols, [sp.diff(expr, v) for v in vsyms], modules="numpy", cse=True)
        self.nonlinear = tuple(p for p in self.params if p not in self.linear)
        if self.linear:
            lin = [sp.Symbol(p, real=True) for p in self.linear]
            basis = [sp.diff(expr, c) for c in lin]
            if any(b.free_symbols & set(lin) for b in basis):
                raise ValueError(f"form {name}: parameters {self.linear} do not enter linearly")
            offset = expr.subs({c: 0 for c in lin})
            rest = symbols[: len(self.variables)] + [sp.Symbol(p, real=True) for p in self.nonlinear]
            self._basis = sp.lambdify(rest, basis, modules="numpy", cse=True)
            self._offset = sp.lambdify(rest, offset, modules="numpy", cse=True)

    def __repr__(self) -> str:
        return f"Form({self.name}: {self.formula()})"

    def formula(self) -> str:
        """The law as text, e.g. ``A/N**alpha + B/D**beta + E``."""
        return str(self.expr)

    def latex(self) -> str:
        return sp.latex(self.expr)

    # -- evaluation ---------------------------------------------------------------------------
    def _args(self, X: Mapping[str, np.ndarray], values: Sequence[Any]) -> list[Any]:
        return [np.asarray(X[v], dtype=float) for v in self.variables] + list(values)

    def predict(self, X: Mapping[str, np.ndarray], params: Sequence[float] | np.ndarray) -> np.ndarray:
        """The law at the rows of ``X`` (variable -> 1-D array) for natural parameter values."""
        n = len(np.asarray(X[self.variables[0]]))
        with np.errstate(all="ignore"):
            return np.broadcast_to(np.asarray(self._value(*self._args(X, params)), dtype=float), (n,)).copy()

    def jacobian(self, X: Mapping[str, np.ndarray], params: Sequence[float] | np.ndarray) -> np.ndarray:
        """``d f / d params`` at the rows of ``X``: an (n, P) array in natural units."""
        n = len(np.asarray(X[self.variables[0]]))
        with np.errstate(all="ignore"):
            cols = self._jac(*self._args(X, params))
        return np.stack([np.broadcast_to(np.asarray(c, dtype=float), (n,)) for c in cols], axis=1)

    def slopes(self, X: Mapping[str, np.ndarray], params: Sequence[float] | np.ndarray) -> np.ndarray:
        """``d f / d x`` for each variable at the rows of ``X``: an (n, V) array."""
        n = len(np.asarray(X[self.variables[0]]))
        with np.errstate(all="ignore"):
            cols = self._slopes(*self._args(X, params))
        return np.stack([np.broadcast_to(np.asarray(c, dtype=float), (n,)) for c in cols], axis=1)

    def basis(self, X: Mapping[str, np.ndarray], nonlinear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For variable projection: ``(offset, Phi)`` with ``f = offset + Phi @ c``.

        ``nonlinear`` is a (G, q) array of natural values of :attr:`nonlinear` (G grid points);
        returns offset (G, n) and Phi (G, n, k) for the k :attr:`linear` parameters.
        """
        if not self.linear:
            raise ValueError(f"form {self.name} has no linear parameters for variable projection")
        nonlinear = np.atleast_2d(np.asarray(nonlinear, dtype=float))
        g = nonlinear.shape[0]
        xs = [np.asarray(X[v], dtype=float)[None, :] for v in self.variables]
        n = xs[0].shape[1]
        rest = xs + [nonlinear[:, j:j + 1] for j in range(nonlinear.shape[1])]
        with np.errstate(all="ignore"):
            phi = np.stack([np.broadcast_to(np.asarray(b, dtype=float), (g, n)) for b in self._basis(*rest)], axis=2)
            offset = np.broadcast_to(np.asarray(self._offset(*rest), dtype=float), (g, n))
        return offset, phi

    # -- coordinates --------------------------------------------------------------------------
    def to_natural(self, theta: np.ndarray) -> np.ndarray:
        """Optimiser coordinates -> natural parameter values (``exp`` for positive parameters)."""
        theta = np.asarray(theta, dtype=float)
        mask = self.log_mask
        with np.errstate(over="ignore"):
            return np.where(mask, np.exp(np.where(mask, theta, 0.0)), theta)

    def to_theta(self, params: np.ndarray) -> np.ndarray:
        params = np.asarray(params, dtype=float)
        mask = self.log_mask
        with np.errstate(divide="ignore"):
            return np.where(mask, np.log(np.where(mask, params, 1.0)), params)

    @property
    def log_mask(self) -> np.ndarray:
        return np.array([p in self.positive for p in self.params])

    def ranges(self, X: Mapping[str, np.ndarray], y: np.ndarray) -> Ranges:
        """The box of starting values of every parameter, in optimiser coordinates."""
        given = self._ranges(X, y) if callable(self._ranges) else dict(self._ranges or {})
        out = {}
        for p in self.params:
            out[p] = tuple(given.get(p, (-3.0, 3.0) if p in self.positive else (0.0, 1.0)))
        return out


# ---------------------------------------------------------------------------------------------
# Built-in forms
# ---------------------------------------------------------------------------------------------
def _sym(*names: str) -> list[sp.Symbol]:
    return [sp.Symbol(n, real=True) for n in names]


def _log_span(X: Mapping[str, np.ndarray], var: str) -> tuple[float, float]:
    logs = np.log(np.asarray(X[var], dtype=float))
    return float(logs.min()), float(logs.max())


def power(variable: str = "x") -> Form:
    """Saturating power law ``y = E + A x^-alpha`` (E, A >= 0)."""
    x, E, A, alpha = _sym(variable, "E", "A", "alpha")
    return Form("power", E + A * x ** (-alpha), [variable], ["E", "A", "alpha"], positive=["E", "A"],
                linear=["E", "A"], ranges={"alpha": (0.0, 2.0), "E": (-3.0, 2.0), "A": (-2.0, 12.0)},
                spec={"form": "power", "variable": variable}, decreasing=[variable])


def chinchilla(n: str = "N", d: str = "D") -> Form:
    """Chinchilla ``L(N, D) = E + A / N^alpha + B / D^beta`` (Hoffmann et al. 2022, eq. 2).

    The starting box is Hoffmann et al.'s grid: alpha, beta in [0, 2], e = log E in [-1, 1],
    a = log A and b = log B in [0, 25].
    """
    N, D, E, A, B, alpha, beta = _sym(n, d, "E", "A", "B", "alpha", "beta")
    return Form("chinchilla", E + A * N ** (-alpha) + B * D ** (-beta), [n, d], ["E", "A", "B", "alpha", "beta"],
                positive=["E", "A", "B"], linear=["E", "A", "B"],
                ranges={"alpha": (0.0, 2.0), "beta": (0.0, 2.0), "E": (-1.0, 1.0), "A": (0.0, 25.0),
                        "B": (0.0, 25.0)},
                spec={"form": "chinchilla", "n": n, "d": d}, decreasing=[n, d])


def hoffmann_grid() -> np.ndarray:
    """The 4,500 starting points of Hoffmann et al. 2022 (approach 3) in optimiser coordinates.

    Columns follow ``chinchilla().params`` = (E, A, B, alpha, beta) as (e, a, b, alpha, beta):
    alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}.
    """
    e = np.arange(-1.0, 1.01, 0.5)
    ab = np.arange(0.0, 25.1, 5.0)
    ex = np.arange(0.0, 2.01, 0.5)
    grid = np.stack(np.meshgrid(e, ab, ab, ex, ex, indexing="ij"), axis=-1).reshape(-1, 5)
    return grid


def kaplan(n: str = "N", d: str = "D") -> Form:
    """Kaplan et al. 2020, eq. 1.5: ``L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D``."""
    N, D, Nc, Dc, aN, aD = _sym(n, d, "N_c", "D_c", "alpha_N", "alpha_D")
    expr = ((Nc / N) ** (aN / aD) + Dc / D) ** aD
    return Form("kaplan", expr, [n, d], ["N_c", "D_c", "alpha_N", "alpha_D"],
                positive=["N_c", "D_c", "alpha_N", "alpha_D"],
                ranges={"N_c": (np.log(1e8), np.log(1e16)), "D_c": (np.log(1e8), np.log(1e16)),
                        "alpha_N": (np.log(0.02), np.log(1.0)), "alpha_D": (np.log(0.02), np.log(1.0))},
                spec={"form": "kaplan", "n": n, "d": d}, decreasing=[n, d])


def broken(variable: str = "x", breaks: int = 1) -> Form:
    """Broken neural scaling law (Caballero et al. 2023, eq. 1) with ``breaks`` breaks.

    ``y = a + b x^-c0 prod_{i=1..k} (1 + (x / d_i)^(1 / f_i))^(-c_i f_i)``; a, b >= 0 (linear),
    break locations d_i > 0 and sharpnesses f_i > 0 in log coordinates, slopes c0, c_i free.
    """
    if not isinstance(breaks, int) or breaks < 1:
        raise ValueError(f"a broken power law needs breaks >= 1, got {breaks}")
    x, a, b, c0 = _sym(variable, "a", "b", "c0")
    expr = b * x ** (-c0)
    names = ["a", "b", "c0"]
    for i in range(1, breaks + 1):
        c, d, f = _sym(f"c{i}", f"d{i}", f"f{i}")
        expr = expr * (1 + (x / d) ** (1 / f)) ** (-c * f)
        names += [f"c{i}", f"d{i}", f"f{i}"]
    positive = ["a", "b"] + [f"{s}{i}" for i in range(1, breaks + 1) for s in ("d", "f")]

    def ranges(X: Mapping[str, np.ndarray], y: np.ndarray) -> Ranges:
        lo, hi = _log_span(X, variable)
        box: Ranges = {"c0": (0.0, 1.0), "a": (-3.0, 2.0), "b": (-2.0, 10.0)}
        for i in range(1, breaks + 1):
            box.update({f"c{i}": (-1.0, 1.0), f"d{i}": (lo, hi), f"f{i}": (np.log(0.05), np.log(2.0))})
        return box

    return Form("broken", a + expr, [variable], names, positive=positive, linear=["a", "b"], ranges=ranges,
                spec={"form": "broken", "variable": variable, "breaks": breaks}, decreasing=())


def annealing(s1: str = "S1", s2: str = "S2") -> Form:
    """The learning-rate annealing law ``L = L0 + A S1^-alpha - C S2`` (Tissue et al. 2024, eq. 1).

    S1 is the forward area (sum of learning rates so far) and S2 the annealing area (sum of
    momentum-smoothed learning-rate decreases); see :func:`annealing_features`.  L0, A, C >= 0.
    """
    S1, S2, L0, A, C, alpha = _sym(s1, s2, "L0", "A", "C", "alpha")
    return Form("annealing", L0 + A * S1 ** (-alpha) - C * S2, [s1, s2], ["L0", "A", "C", "alpha"],
                positive=["L0", "A", "C"], linear=["L0", "A", "C"],
                ranges={"alpha": (0.0, 2.0), "L0": (-3.0, 2.0), "A": (-3.0, 3.0), "C": (-3.0, 3.0)},
                spec={"form": "annealing", "s1": s1, "s2": s2}, positive_variables=[s1], decreasing=[s1])


def annealing_features(lr: Sequence[float] | np.ndarray, *, decay: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    """The annealing features of Tissue et al. 2024 (eq. 1) for one run.

    ``lr[i]`` is the learning rate of update ``i`` (i = 0 .. T-1).  After ``s`` updates
    ``S1(s) = sum_{i < s} lr_i`` and ``S2(s) = sum_{i < s} m_i`` with the momentum
    ``m_i = decay * m_{i-1} + (lr_{i-1} - lr_i)`` (``m_0 = 0``).  Returns S1, S2 of length T + 1
    (s = 0 .. T); S1(0) = 0, so the law applies from s = 1 on.
    """
    lr = np.asarray(lr, dtype=float)
    if lr.ndim != 1 or lr.size == 0 or not np.all(np.isfinite(lr)) or np.any(lr < 0):
        raise ValueError("lr must be a non-empty 1-D sequence of finite, non-negative learning rates")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    drops = np.concatenate([[0.0], lr[:-1] - lr[1:]])
    m = np.empty_like(lr)
    acc = 0.0
    for i, drop in enumerate(drops):
        acc = decay * acc + drop
        m[i] = acc
    s1 = np.concatenate([[0.0], np.cumsum(lr)])
    s2 = np.concatenate([[0.0], np.cumsum(m)])
    return s1, s2


def expression(text: str, variables: Sequence[str], *, positive: Sequence[str] = (),
               ranges: Ranges | None = None) -> Form:
    """A user-defined law, e.g. ``expression("E + A * N**-alpha", ["N"], positive=["E", "A"])``.

    The text is parsed without ``eval`` (see :func:`theorylab.fits.expressions.parse_expression`);
    every name that is not a variable is a parameter.  Inputs are not checked for sign: where the law is
    undefined on the data the fit reports it.  ``positive`` parameters are fitted in log
    coordinates; so is every *scale parameter*, a parameter that multiplies the base of a power
    with a fitted exponent, like ``N_c`` in ``(N_c / N)**alpha`` (Kaplan et al. 2020): the power is
    real only for a positive base, and a scale is found in log coordinates whatever its magnitude.
    A scale that shares its base with variables starts in a box of magnitudes around theirs (from
    1e-3 times the smallest to 1e6 times the largest value); ``ranges`` gives starting boxes
    (optimiser coordinates; default [0, 1], or [-3, 3] for log coordinates).
    """
    variables = tuple(variables)
    if not variables:
        raise ValueError("an expression form needs at least one variable (input column)")
    expr, params = parse_expression(text, variables=variables)
    unknown = set(positive) - set(params)
    if unknown:
        raise ValueError(f"positive names {sorted(unknown)} are not parameters of {text!r}")
    scales = scale_parameters(expr, variables, params)
    given = dict(ranges or {})

    def box(X: Mapping[str, np.ndarray], y: np.ndarray) -> Ranges:
        out: Ranges = {}
        for p, near in scales.items():
            logs = [np.log(x[x > 0]) for x in (np.asarray(X[v], dtype=float) for v in near)]
            logs = [v for v in logs if v.size]
            if logs:
                out[p] = (float(min(v.min() for v in logs)) - np.log(1e3), float(max(v.max() for v in logs)) + np.log(1e6))
        out.update(given)
        return out

    return Form("expression", expr, variables, params, positive=sorted(set(positive) | set(scales)), ranges=box,
                positive_variables=(),
                spec={"form": "expression", "text": text, "variables": list(variables),
                      "positive": list(positive), "ranges": {k: list(v) for k, v in given.items()}})


def scale_parameters(expr: sp.Expr, variables: Sequence[str], params: Sequence[str]) -> dict[str, list[str]]:
    """Parameters that are factors of the base of a power whose exponent holds a parameter, each
    with the variables in the same base: ``(N_c/N)**alpha`` -> ``{"N_c": ["N"]}``."""
    names = set(params)
    out: dict[str, list[str]] = {}
    for power_node in expr.atoms(sp.Pow):
        base, exponent = power_node.as_base_exp()
        if not {s.name for s in exponent.free_symbols} & names:
            continue
        factors = sp.Mul.make_args(base)
        near = sorted({s.name for s in base.free_symbols} & set(variables))
        for factor in factors:
            core = factor.as_base_exp()[0]
            if isinstance(core, sp.Symbol) and core.name in names:
                out.setdefault(core.name, [])
                out[core.name] = sorted(set(out[core.name]) | set(near))
    return out


BUILTIN = {"power": power, "chinchilla": chinchilla, "kaplan": kaplan, "broken": broken, "annealing": annealing}


def make_form(spec: Mapping[str, Any] | str | Form) -> Form:
    """A Form from its ``spec`` dict (as stored in a result), a built-in name, or a Form."""
    if isinstance(spec, Form):
        return spec
    if isinstance(spec, str):
        if spec not in BUILTIN:
            raise ValueError(f"unknown form {spec!r}; built-in forms: {sorted(BUILTIN)} (or pass an expression)")
        return BUILTIN[spec]()
    kwargs = dict(spec)
    name = kwargs.pop("form", None)
    if name == "expression":
        rng = {k: tuple(v) for k, v in kwargs.pop("ranges", {}).items()}
        return expression(kwargs.pop("text"), kwargs.pop("variables"), ranges=rng or None, **kwargs)
    if name not in BUILTIN:
        raise ValueError(f"unknown form {name!r}; built-in forms: {sorted(BUILTIN)}")
    return BUILTIN[name](**kwargs)
