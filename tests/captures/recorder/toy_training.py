"""Tiny models, batches and losses the recorder tests train: an MLP on random data, a small LM."""

import torch
from torch import nn


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 4))


def mlp_batch(step, micro=0, n=16):
    g = torch.Generator().manual_seed(1000 * step + micro)
    return torch.randn(n, 20, generator=g), torch.randint(0, 4, (n,), generator=g)


def mlp_loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


class TinyLM(nn.Module):
    """Embedding -> linear -> head; ``tied=True`` makes the head share the embedding matrix."""

    def __init__(self, vocab=30, d=8, tied=False):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, d)
        self.body = nn.Linear(d, d)
        self.head = nn.Linear(d, vocab, bias=False)
        if tied:
            self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(torch.tanh(self.body(self.emb(idx))))


def lm_batch(step, vocab=30):
    g = torch.Generator().manual_seed(step)
    return torch.randint(0, vocab, (4, 6), generator=g), torch.randint(0, vocab, (4, 6), generator=g)


def lm_loss(model, batch):
    x, y = batch
    out = model(x)
    out = getattr(out, "logits", out)
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
