"""gradstats: statistics of gradients for compression research (stage 2 and the public facade)."""
