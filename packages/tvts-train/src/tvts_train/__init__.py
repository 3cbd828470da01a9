"""TVTS model, pretrainer and evaluations."""
__version__ = "0.1.0"
