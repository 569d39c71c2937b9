"""Fitting methods on training patients: deep MIL (Lightning), MIL heads and classical experts on cell
features, their fusions, SSL pre-training; every method behind one interface (``training.methods``)."""
