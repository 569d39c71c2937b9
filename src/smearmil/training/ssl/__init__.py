"""Self-supervised pre-training of cell encoders (SimCLR, SwAV, DINO)."""
