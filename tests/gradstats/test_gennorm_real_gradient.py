"""The free-loc GenNorm MLE on a real captured gradient (an MLP trained a few steps, written and read
back through a capture): the binned search's fit is a maximum of the likelihood over every entry."""

import numpy as np
import pytest
import scipy.stats as st

import gradstats.gennorm_solver as solver
from gradstats import fit

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def gradient(tmp_path_factory):
    from captures import open_capture, write_capture

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(128, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 512),
                              torch.nn.GELU(), torch.nn.Linear(512, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    # a batch of 4: the weight gradient is a sum of 4 outer products, peaked (beta ~0.77)
    x, y = torch.randn(4, 128), torch.randint(0, 10, (4,))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    grads = {0: {"mid.weight": net[2].weight.grad.detach().clone()}}
    path = tmp_path_factory.mktemp("real") / "capture"
    write_capture(path, grads)
    g = open_capture(path).get("mid.weight", 0).reshape(-1)
    assert g.dtype == np.float32 and g.size == 1024 * 512
    return g


def _profile_loglik(x, beta, loc):
    """max over the scale of the GenNorm log-likelihood at (beta, loc): s^b = (b / n) sum |x - loc|^b."""
    d = np.abs(x.astype(np.float64) - loc)
    scale = (beta * np.mean(d**beta)) ** (1 / beta)
    return st.gennorm(beta, loc, scale).logpdf(x.astype(np.float64)).sum()


def test_binned_fit_of_a_real_gradient_is_a_likelihood_maximum(gradient, monkeypatch):
    x = gradient
    f = fit(x, "gennorm")
    beta, loc, scale = f.params["beta"], f.params["loc"], f.params["scale"]
    assert 0.2 < beta < 1  # a peaked gradient: the binned search (beta < 1, >= 2^18 entries) ran
    # the reported log-likelihood is that of the reported parameters, summed over every entry
    want = st.gennorm(beta, loc, scale).logpdf(x.astype(np.float64)).sum()
    assert f.loglik == pytest.approx(want, rel=1e-10)
    # the scale is the closed-form one at (beta, loc), and beta maximizes the profile likelihood
    assert f.loglik == pytest.approx(_profile_loglik(x, beta, loc), rel=1e-11)
    for db in (1e-4, -1e-4):
        assert _profile_loglik(x, beta * (1 + db), loc) < f.loglik
    # the loc is a data point, and no data point near it has a higher likelihood at this shape
    assert loc in x
    near = np.unique(x[np.argsort(np.abs(x.astype(np.float64) - loc))[:40]])
    q = [np.sum(np.abs(x.astype(np.float64) - m) ** beta) for m in near]
    assert near[int(np.argmin(q))] == np.float32(loc)
    # the exact search over every entry ends on the same maximum or one within 0.01 nats of it
    monkeypatch.setattr(solver, "BINNED_MIN_N", 1 << 40)
    exact = fit(x, "gennorm")
    assert f.loglik >= exact.loglik - 0.01
    assert f.params["beta"] == pytest.approx(exact.params["beta"], rel=1e-4)
