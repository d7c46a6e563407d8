"""Every name of the curated top-level API resolves to a callable."""
import theorylab


def test_every_public_name_resolves():
    for name in theorylab.__all__:
        assert callable(getattr(theorylab, name)) or name == "__version__", name
    assert theorylab.hessian is theorylab.curvature.hessian
