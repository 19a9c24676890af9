"""Full distributed methods, written once against the Comm interface."""
