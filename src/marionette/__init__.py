"""marionette: few-shot face reenactment after MarioNETte (Ha et al., AAAI 2020)."""

__version__ = "0.1.0"
