"""coders: quantizers, entropy coders, compressors and distributed algorithms (stage 3)."""
