"""Helpers shared by every layer (no dependency on any other smearmil module)."""
