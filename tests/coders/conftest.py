"""Shared data for the coders tests."""

import numpy as np
import pytest


@pytest.fixture
def x():
    """20k Laplace entries at gradient scale (float32)."""
    return (np.random.default_rng(0).laplace(size=20_000) * 1e-3).astype(np.float32)



@pytest.fixture(scope="session")
def captured(tmp_path_factory):
    """Real gradients: digits-cnn and stdlib-lm trained 4 steps (steps 0 and 3 recorded)."""
    workloads = pytest.importorskip("captures.workloads")
    root = tmp_path_factory.mktemp("workloads")
    return {name: workloads.capture_workload(name, root / name, steps=4, every=3, progress=False)
            for name in ("digits-cnn", "stdlib-lm")}


def _resnet_grads():
    """Gradients of a small ResNet (basic blocks, BatchNorm, ReLU; He et al. 2016) built from a
    config, trained 3 steps on random images: dead ReLUs give layers with exact zeros."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            return torch.relu(self.b2(self.c2(y)) + self.skip(x))

    widths = (16, 32, 64)  # the config: stage widths, one block each, stride 2 between stages
    cin = widths[0]
    layers = [nn.Conv2d(3, cin, 3, 1, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU()]
    for i, w in enumerate(widths):
        layers.append(Block(cin, w, 1 if i == 0 else 2))
        cin = w
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return {n: p.grad.detach().numpy().ravel().copy() for n, p in model.named_parameters()}


@pytest.fixture(scope="session")
def resnet_grads():
    return _resnet_grads()
