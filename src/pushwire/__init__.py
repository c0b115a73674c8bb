"""pushwire: one push server for every way a client listens."""

__version__ = "0.1.0"
