"""The experiments behind the figures, installed as ``fobtheory.experiments``."""
