"""Compression operators: a tensor in, a Payload with exact wire bits out."""
