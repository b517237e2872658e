"""The `tokrec` command line."""
