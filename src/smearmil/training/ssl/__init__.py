"""Self-supervised pre-training of cell encoders; each method registers itself in ``SSL_METHODS``."""

from . import dino, simclr, swav  # noqa: F401  (registration)
from .methods import SSL_METHODS, SSLMethod

__all__ = ["SSL_METHODS", "SSLMethod"]
