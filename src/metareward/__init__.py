"""metareward: Meta-Rewarding and Self-Rewarding language models, trained with iterative DPO."""

__version__ = "0.1.0"
