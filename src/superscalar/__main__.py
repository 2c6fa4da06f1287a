"""`python -m superscalar` runs the CLI."""

from superscalar.cli.main import main

main()
