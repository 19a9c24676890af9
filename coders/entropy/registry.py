"""Coders by name: "ans", "range", "huffman", "zstd" / "zstd-<level 1..22>" -> a `Coder`."""

from __future__ import annotations

from coders.entropy.ans import AnsCoder
from coders.entropy.base import Coder
from coders.entropy.huffman import HUFFMAN_LANE, HuffmanCoder
from coders.entropy.range import RangeCoder
from coders.entropy.zstd import ZstdCoder

CODER_TYPES: dict[str, type] = {
    "ans": AnsCoder, "range": RangeCoder, "huffman": HuffmanCoder, "zstd": ZstdCoder,
}
"""name -> coder class; a new coder is one module plus one entry here."""
CODERS = ("ans", "range", "huffman", "zstd-3", "zstd-19")
"""The coder names a report runs by default-able choice (zstd at two levels)."""
BY_WIRE_ID = {cls.wire_id: name for name, cls in CODER_TYPES.items()}


def coder_kind(coder: str) -> str:
    """The registry name of a coder spec ("zstd-19" -> "zstd"); ValueError for an unknown one."""
    return make_coder(coder).name


def make_coder(coder: str, *, lane: int = HUFFMAN_LANE) -> Coder:
    """A coder from its name: "ans", "range", "huffman" (lanes of `lane`), "zstd" (level 3) or
    "zstd-<level 1..22>"."""
    if not isinstance(coder, str):
        raise ValueError(f"coder must be a name, got {coder!r}")
    c = coder.lower()
    if c == "huffman":
        return HuffmanCoder(lane)
    if c in ("ans", "range"):
        return CODER_TYPES[c]()
    if c == "zstd":
        return ZstdCoder(3)
    if c.startswith("zstd-"):
        try:
            level = int(c[5:])
        except ValueError:
            level = 0
        if 1 <= level <= 22:
            return ZstdCoder(level)
    raise ValueError(f"unknown coder {coder!r}; use one of ans, range, huffman, zstd-<level 1..22>")
