"""The Result base: JSON round trips, atomic save/load, display."""
import json
import math

import numpy as np
import pytest

from theorylab.results import Result, result_class


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
    assert "<table>" in r._repr_html_()


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
