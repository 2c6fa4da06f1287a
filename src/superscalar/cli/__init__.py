"""The `superscalar` command."""
