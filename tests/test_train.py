"""The training loop: exact GD iterates, batch semantics, monitors that leave no trace, resume."""
import numpy as np
import pytest
import torch
from torch import nn

from theorylab.data import batches
from theorylab.metrics import accuracy, mean_loss
from theorylab.monitors import Monitor, Trace, monitor
from theorylab.results import Result
from theorylab.sharpness import Sharpness, lambda_max
from theorylab.train import train


def _regression(n=40, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.randn(d, 1, generator=g, dtype=torch.float64) + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, y


def test_gd_matches_closed_form_iterates_on_least_squares():
    x, y = _regression()
    model = nn.Linear(5, 1, bias=False).double()
    w = model.weight.detach().clone().T.numpy()
    res = train(model, nn.MSELoss(), (x, y), steps=25, lr=0.1)
    X, Y = x.numpy(), y.numpy()
    for _ in range(25):  # L = |Xw - y|^2 / n  ->  grad = 2 X^T (Xw - y) / n
        w = w - 0.1 * 2 * X.T @ (X @ w - Y) / len(Y)
    np.testing.assert_allclose(model.weight.detach().T.numpy(), w, rtol=1e-12, atol=1e-12)
    assert res.final_step == 25 and len(res.loss) == 25 and res.loss[-1] < res.loss[0]


def test_gd_over_uneven_batches_equals_full_batch():
    x, y = _regression(n=37)
    a, b = nn.Linear(5, 1).double(), nn.Linear(5, 1).double()
    b.load_state_dict(a.state_dict())
    train(a, nn.MSELoss(), (x, y), steps=10, lr=0.05)
    train(b, nn.MSELoss(), batches(x, y, 8), steps=10, lr=0.05)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-12)


def _classifier(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3)).double()


def _noisy_monitor():
    def fn(model, step):
        torch.rand(3)  # consumes the global RNG
        model.train()
        model(torch.randn(8, 6, dtype=torch.float64))  # updates BN running stats in train mode
        return {"a": float(step), "b": 1.0}
    return Monitor("noisy", fn, every=3, mode="train")


def test_monitors_do_not_disturb_training():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(50, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (50,), generator=g)
    ref, mon = _classifier(), _classifier()
    torch.manual_seed(5)
    r1 = train(ref, nn.CrossEntropyLoss(), (x, y), steps=12, lr=0.1, optimizer="sgd", batch_size=10, seed=3)
    torch.manual_seed(5)
    r2 = train(mon, nn.CrossEntropyLoss(), (x, y), steps=12, lr=0.1, optimizer="sgd", batch_size=10, seed=3,
               monitors=[_noisy_monitor(), monitor(mean_loss, nn.CrossEntropyLoss(), (x, y), every=4),
                         monitor(accuracy, (x, y), every=6)])
    np.testing.assert_array_equal(r1.loss, r2.loss)
    for (n1, t1), (n2, t2) in zip(ref.state_dict().items(), mon.state_dict().items()):
        assert torch.equal(t1, t2), n1
    assert r2.monitors["noisy"].steps.tolist() == [0, 3, 6, 9, 12]
    assert r2.monitors["noisy"].series("a").tolist() == [0, 3, 6, 9, 12]
    assert r2.monitors["accuracy"].steps.tolist() == [0, 6, 12]
    assert r2.monitors["mean_loss"].steps.tolist() == [0, 4, 8, 12]


def _interrupter(at_step):
    """A monitor that raises KeyboardInterrupt at ``at_step`` (a Ctrl-C in the middle of training)."""
    def fn(model, step):
        if step == at_step:
            raise KeyboardInterrupt
        return 0.0
    return Monitor("interrupter", fn, every=1)


def test_checkpoint_resume_equals_uninterrupted_run(tmp_path):
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(60, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (60,), generator=g)
    ce = nn.CrossEntropyLoss()
    kwargs = dict(steps=40, lr=0.05, optimizer="adam", batch_size=16, seed=7)
    full = _classifier(seed=1)
    r_full = train(full, ce, (x, y), monitors=[monitor(mean_loss, ce, (x, y), every=5), _interrupter(None)], **kwargs)
    ckpt = tmp_path / "run.pt"
    part = _classifier(seed=1)
    with pytest.raises(KeyboardInterrupt):
        train(part, ce, (x, y), monitors=[monitor(mean_loss, ce, (x, y), every=5), _interrupter(23)],
              checkpoint=ckpt, checkpoint_every=10, **kwargs)
    resumed = _classifier(seed=99)  # a new process: fresh weights, state comes from the checkpoint (step 20)
    r_res = train(resumed, ce, (x, y), monitors=[monitor(mean_loss, ce, (x, y), every=5), _interrupter(None)],
                  checkpoint=ckpt, checkpoint_every=10, **kwargs)
    np.testing.assert_array_equal(r_full.loss, r_res.loss)
    np.testing.assert_array_equal(r_full.monitors["mean_loss"].series(), r_res.monitors["mean_loss"].series())
    np.testing.assert_array_equal(r_full.monitors["interrupter"].steps, np.arange(41))
    np.testing.assert_array_equal(r_res.monitors["interrupter"].steps, np.arange(41))
    for t1, t2 in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(t1, t2)


def test_schedule_stop_and_divergence():
    x, y = _regression()
    res = train(nn.Linear(5, 1).double(), nn.MSELoss(), (x, y), steps=10, lr=0.1, lr_schedule=lambda t: 1 / (1 + t))
    np.testing.assert_allclose(res.lr, [0.1 / (1 + t) for t in range(10)])
    res = train(nn.Linear(5, 1).double(), nn.MSELoss(), (x, y), steps=500, lr=0.1, stop_loss=0.05)
    assert res.final_step < 500 and res.loss[-1] < 0.05
    res = train(nn.Linear(5, 1).double(), nn.MSELoss(), (x, y), steps=500, lr=10.0)
    assert res.diverged and res.final_step < 500


def test_bad_input_is_a_clear_error():
    x, y = _regression()
    m = nn.Linear(5, 1).double()
    with pytest.raises(ValueError, match="full-batch"):
        train(m, nn.MSELoss(), (x, y), steps=1, lr=0.1, optimizer="gd", batch_size=4)
    with pytest.raises(ValueError, match="optimizer"):
        train(m, nn.MSELoss(), (x, y), steps=1, lr=0.1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="empty"):
        train(m, nn.MSELoss(), [], steps=1, lr=0.1)
    with pytest.raises(ValueError, match="scalar"):
        train(m, nn.MSELoss(reduction="none"), (x, y), steps=1, lr=0.1)
    with pytest.raises(ValueError, match="batch_size must be in"):
        train(m, nn.MSELoss(), (x, y), steps=1, lr=0.1, optimizer="sgd", batch_size=0)


def test_an_analyzer_as_a_monitor_keeps_its_typed_results():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.randn(20, 4, dtype=torch.float64)
    y = x[:, :1] ** 2
    run = train(model, nn.MSELoss(), (x, y), steps=6, lr=0.05,
                monitors=[monitor(lambda_max, nn.MSELoss(), (x, y), every=3, tol=1e-8, seed_from_step=True)])
    trace = run.monitors["lambda_max"]
    assert isinstance(trace, Trace) and trace.steps.tolist() == [0, 3, 6]
    assert all(isinstance(v, Sharpness) for v in trace.values)
    assert trace.values[1].meta["seed"] == 3  # a fresh, reproducible start at every step
    np.testing.assert_array_equal(trace.series("value"), [v.value for v in trace.values])
    assert lambda_max(model, nn.MSELoss(), (x, y), tol=1e-8, seed=6).value == pytest.approx(trace.values[-1].value,
                                                                                          rel=1e-6)
    back = Result.from_dict(run.to_dict())
    assert back == run and isinstance(back.monitors["lambda_max"].values[0], Sharpness)
    with pytest.raises(ValueError, match="name the key or field"):
        trace.series()
    with pytest.raises(ValueError, match="different names"):
        train(model, nn.MSELoss(), (x, y), steps=1, lr=0.05,
              monitors=[monitor(mean_loss, nn.MSELoss(), (x, y)), monitor(mean_loss, nn.MSELoss(), (x, y))])
