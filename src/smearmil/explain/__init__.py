"""Explanations: each cell's contribution to the patient decision, guided-backprop saliency, galleries."""
