"""Runtimes: the one-process simulator and torch.distributed, behind one Comm interface."""
