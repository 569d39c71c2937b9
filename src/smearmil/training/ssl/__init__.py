"""Self-supervised pre-training of cell encoders; each method (a module here) registers itself in
``SSL_METHODS`` and is found on start."""

from ...utils.registry import import_modules
from .methods import SSL_METHODS, SSLMethod

__all__ = ["SSL_METHODS", "SSLMethod"]

import_modules(__name__, __path__)
