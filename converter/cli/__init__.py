"""The `omz-like` command line: one module per command, wired in app.py."""
