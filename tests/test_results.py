"""The Result base: JSON round trips, atomic save/load, display."""
import json
import math

import numpy as np
import pytest

from theorylab.results import Result, result_class, value_with_error


@result_class
class _Inner(Result):
    values: np.ndarray


@result_class
class _Outer(Result):
    name: str
    value: float
    count: int
    pair: tuple[int, int]
    inner: _Inner
    series: dict[str, np.ndarray]
    flag: bool = False


def _example() -> _Outer:
    return _Outer(name="x", value=float("nan"), count=3, pair=(1, 2),
                  inner=_Inner(values=np.arange(6, dtype=np.float32).reshape(2, 3)),
                  series={"a": np.array([1.5, np.inf])}, meta={"seed": 1})


def test_round_trip_preserves_types_arrays_and_non_finite_floats(tmp_path):
    r = _example()
    data = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    back = Result.from_dict(data)
    assert type(back) is _Outer and back == r
    assert math.isnan(back.value) and back.pair == (1, 2)
    assert back.inner.values.dtype == np.float32 and back.inner.values.shape == (2, 3)
    assert back.series["a"][1] == np.inf
    path = r.save(tmp_path / "sub" / "r.json")
    assert _Outer.load(path) == r
    assert not list(path.parent.glob("*.tmp"))


def test_equality_sees_array_differences():
    a, b = _example(), _example()
    assert a == b
    c = _Outer(**{**{f: getattr(a, f) for f in ("name", "value", "count", "pair", "series")},
                  "inner": _Inner(values=np.zeros((2, 3), dtype=np.float32))})
    assert a != c


def test_frozen_and_readable_repr():
    r = _example()
    with pytest.raises(Exception):
        r.count = 4  # type: ignore[misc]
    text = repr(r)
    assert text.startswith("_Outer(name='x'") and "meta" not in text
    assert "<table" in r._repr_html_()


def test_from_dict_rejects_unknown_or_wrong_type():
    with pytest.raises(ValueError, match="unknown Result type"):
        Result.from_dict({"type": "Nope"})
    with pytest.raises(ValueError, match="not a _Inner"):
        _Inner.from_dict(_example().to_dict())
    with pytest.raises(ValueError, match="not a serialised Result"):
        Result.from_dict([1, 2])


def test_unserialisable_field_is_a_clear_error():
    @result_class
    class _Bad(Result):
        thing: object

    with pytest.raises(TypeError, match="cannot serialise a set"):
        _Bad(thing={1}).to_dict()


def test_equality_ignores_provenance_of_the_result_and_of_nested_results():
    a = _example()
    b = _Outer(**{f: getattr(a, f) for f in ("name", "value", "count", "pair", "series")},
               inner=_Inner(values=a.inner.values, meta={"wall_time_s": 2.0}), meta={"seed": 7})
    assert a == b


# --- the HTML view ------------------------------------------------------------------------------------
@result_class
class _Measured(Result):
    estimate: float
    stderr: float
    lr: float
    lr_stderr: float
    method: str
    top: np.ndarray
    samples: np.ndarray
    extra: None = None


def test_html_view_pairs_errors_shows_small_arrays_and_folds_the_rest():
    r = _Measured(estimate=12.3456, stderr=0.0123, lr=0.5, lr_stderr=0.0, method="hutch++",
                  top=np.array([3.0, 2.0, 1.0]), samples=np.arange(1000.0), meta={"seed": 3})
    view = r._repr_html_()
    assert "12.346 ± 0.012" in view and ">0.5<" in view and "lr_stderr" not in view.split("<details")[0]
    assert ">hutch++<" in view and "[3, 2, 1]" in view
    assert "array(shape=(1000,), dtype=float64)" in view.split("<details")[1] and "999" not in view
    assert "meta.seed" in view and "<img" not in view  # no plot, no image


@pytest.mark.parametrize("value, error, text", [
    (12.3456, 0.0123, "12.346 ± 0.012"), (2143.42, 440.0, "2140 ± 440"), (0.347, 0.011, "0.347 ± 0.011"),
    (5.0, 0.0, "5"), (2.03e12, 9.7e11, "2.03e+12 ± 9.7e+11"), (1.0, float("nan"), "1 ± nan")])
def test_value_with_error(value, error, text):
    assert value_with_error(value, error) == text


def _fit_rows(n):
    from theorylab.fits import fit

    rng = np.random.default_rng(0)
    N, D = 10 ** rng.uniform(7, 10, n), 10 ** rng.uniform(9, 12, n)
    L = (1.8 + 480 * N ** -0.35 + 2100 * D ** -0.37) * np.exp(0.01 * rng.normal(size=n))
    return fit({"N": N, "D": D, "loss": L}, "chinchilla", grid_size=400)


def test_fit_result_view_reads_like_a_fit_report_and_never_dumps_its_data():
    import re

    small, big = _fit_rows(200), _fit_rows(10_000)
    views = [r._repr_html_() for r in (small, big)]
    for res, view in zip((small, big), views):
        text = re.sub(r'src="data:image/png;base64,[^"]*"', "", view)
        assert view.count("<img") == 1 and len(view) < 150_000
        assert "value ± std. error" in text and all(f">{p}<" in text for p in res.param_names)
        assert f"{res.num_points:,}" in text and "AIC" in text
        assert len(re.findall(r"\d+\.\d+", text)) < 80           # the few numbers that matter, not the rows
        width = int(re.search(r'<img[^>]* width="(\d+)"', view).group(1))
        assert 300 <= width <= 700                                  # a readable size, never a strip
    assert abs(len(views[1]) - len(views[0])) < 0.5 * len(views[0])  # no growth with the number of rows
    assert "Suspect fit" not in views[0]


def test_fit_warnings_are_shown_first():
    from theorylab.fits import fit
    from theorylab.fits.diagnostics import SuspectFitWarning

    N = np.logspace(5, 9, 30)
    with pytest.warns(SuspectFitWarning):
        res = fit({"N": N, "loss": (8.8e13 / N) ** 0.076}, "(Nc/N)**alpha", bounds={"alpha": (0.1, 1)})
    view = res._repr_html_()
    assert view.index("Suspect fit: alpha = 0.1 is at its lower bound") < view.index("<table")


def test_repr_of_a_fit_names_its_data_without_dumping_it():
    text = repr(_fit_rows(300))
    assert "data={'N': array(shape=(300,), dtype=float64)" in text and len(text) < 3000


def test_a_saved_result_loads_in_a_fresh_process_without_importing_its_module(tmp_path):
    import subprocess
    import sys

    from theorylab.fits import fit

    x = np.geomspace(1, 1e4, 12)
    fit({"x": x, "y": 2.0 + 5.0 * x ** -0.5}, "power", x="x", y="y").save(tmp_path / "fit.json")
    code = ("from theorylab.results import Result; r = Result.load(r'%s'); print(type(r).__name__)"
            % (tmp_path / "fit.json"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "FitResult"
