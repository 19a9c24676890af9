"""Sizes of the values that travel, in bits: the one place a format's width is written.

Every bit count in `coders` (side information of quantizers and models, payload sizes of the
compressors, the 16-bit baseline of every report) takes its widths from here.
"""

FLOAT32_BITS = 32
FLOAT16_BITS = 16
BF16_BITS = 16
"""The baseline: a bf16 (or fp16) all-reduce sends 16 bits per entry."""
INT32_BITS = 32
"""An int32 index (top-k positions, S3GD-MV supports)."""
