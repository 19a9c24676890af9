"""Capture the gradients of real architectures built from configs (random init, no downloads).

Usage (from the repository root)::

    python benchmarks/capture_real_nets.py resnet18 OUT_DIR   # torchvision's ResNet-18 layout
    python benchmarks/capture_real_nets.py gpt2 OUT_DIR       # transformers' GPT2Config

(gpt2 needs `pip install transformers`.)

resnet18: BasicBlock [2, 2, 2, 2] (11.2M parameters, written out here because torchvision's CUDA
wheels do not import on this machine), 4 Adam steps on 32 synthetic 10-class 64x64 images; gpt2:
4 layers, d 384, 6 heads, vocabulary 8000 (10.2M parameters), 4 AdamW steps on random tokens.
Steps 0 and 2 are recorded in full; then run `gradstats fit OUT_DIR` / `gradstats code OUT_DIR`.
"""
import sys

import torch
import torch.nn as nn

from captures import GradientRecorder


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut (He et al. 2016, torchvision's layout)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's parameter names: conv1, bn1, layer1..layer4 of two blocks, fc."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        c_in = 64
        for i, c in enumerate((64, 128, 256, 512), start=1):
            blocks = (BasicBlock(c_in, c, 1 if i == 1 else 2), BasicBlock(c, c, 1))
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            c_in = c
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def capture_resnet18(out: str) -> None:
    torch.manual_seed(0)
    model = ResNet18()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, 64, 64, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    x += y.view(-1, 1, 1, 1).float() * 0.1  # a learnable signal
    with GradientRecorder(model, out, every=2, overwrite=True):
        for step in range(4):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            print("step", step, "loss", round(loss.item(), 4))


def capture_gpt2(out: str) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=384, n_head=6, vocab_size=8000, n_positions=128))
    opt = torch.optim.AdamW(model.parameters(), 3e-4)
    ids = torch.randint(0, 8000, (8, 128), generator=torch.Generator().manual_seed(1))
    with GradientRecorder(model, out, every=2, overwrite=True):
        for step in range(4):
            opt.zero_grad()
            loss = model(ids, labels=ids).loss
            loss.backward()
            opt.step()
            print("step", step, "loss", round(loss.item(), 4))


if __name__ == "__main__":
    nets = {"resnet18": capture_resnet18, "gpt2": capture_gpt2}
    if len(sys.argv) != 3 or sys.argv[1] not in nets:
        sys.exit(f"usage: capture_real_nets.py {{{','.join(nets)}}} OUT_DIR")
    nets[sys.argv[1]](sys.argv[2])
