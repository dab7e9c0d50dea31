"""The `osa` command line."""
