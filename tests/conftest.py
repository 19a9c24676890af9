import os

import pytest
import torch

# Keep the suite inside its time budget on 2 cores: one intra-op thread per test process (xdist runs 2).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)

try:
    from hypothesis import settings

    # Wall-clock deadlines flake on a loaded 2-core CI machine; correctness is what the property tests check.
    settings.register_profile("ci", deadline=None, print_blob=True)
    settings.load_profile("ci")
except ImportError:  # hypothesis is in the `test` extra; tests that need it import it themselves
    pass


@pytest.fixture(scope="session")
def workload_grads():
    """Every parameter's gradient of `digits-cnn` and `stdlib-lm` (seed 0) after 3 steps: real
    gradients for the float codec and the goodness-of-fit tests."""
    from captures import make_workload

    out = {}
    for name in ("digits-cnn", "stdlib-lm"):
        w = make_workload(name, seed=0)
        for _ in range(3):
            w.step()
        out.update({f"{name}/{n}": p.grad.detach().clone() for n, p in w.model.named_parameters()})
    return out
