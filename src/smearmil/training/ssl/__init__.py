"""Self-supervised pre-training of cell encoders: SimCLR, SwAV and DINO, each a module here registered
in ``SSL_METHODS`` (declared in ``training.config.components``, so configs name them without torch)."""

from ..config.components import SSL_METHODS

__all__ = ["SSL_METHODS"]
