"""What the store's fault tests start from: a small sampled capture, a layer spec, rewriting a step file."""

import numpy as np
from safetensors import safe_open
from safetensors.torch import save_file

from captures import write_capture
from captures.store import LayerSpec


def layer_spec(name="w", n=8):
    return LayerSpec(name, (n,), "float32", "float32")


def small_sampled_capture(tmp_path):
    """Three steps of a full layer ``a`` (3x4) and a sampled layer ``b`` (20 of 40 entries)."""
    rng = np.random.default_rng(0)
    grads = {s: {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=20).astype(np.float32)}
             for s in (0, 1, 2)}
    return write_capture(tmp_path / "cap", grads, indices={"b": np.arange(0, 40, 2)}, shapes={"b": (40,)})


def rewrite_step(path, change):
    """Rewrite a step file with ``change(tensors)`` applied, keeping its metadata (and its checksums)."""
    with safe_open(str(path), "pt") as h:
        meta = h.metadata()
        tensors = {k: h.get_tensor(k) for k in h.keys()}
    change(tensors)
    save_file(tensors, str(path), metadata=meta)
