"""smearmil: deep multiple-instance learning on blood-smear cells and clinical attributes."""

__version__ = "0.1.0"
