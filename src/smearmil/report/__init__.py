"""Reports: one self-contained HTML page (and Markdown) with every result of a run."""
