"""Real gradients of the built-in workloads, shared by the float codec tests."""

import pytest


@pytest.fixture(scope="session")
def workload_grads():
    """Every parameter's gradient of `digits-cnn` and `stdlib-lm` (seed 0) after 3 steps."""
    from captures import make_workload

    out = {}
    for name in ("digits-cnn", "stdlib-lm"):
        w = make_workload(name, seed=0)
        for _ in range(3):
            w.step()
        out.update({f"{name}/{n}": p.grad.detach().clone() for n, p in w.model.named_parameters()})
    return out
