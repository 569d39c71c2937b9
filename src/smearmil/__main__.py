"""`python -m smearmil` runs the command-line interface."""

from smearmil.cli import app

if __name__ == "__main__":
    app(prog_name="smearmil")
