"""Log set-up shared by the CLI and child processes: plain lines on stderr."""

from __future__ import annotations

import logging


def log_to_stderr(level: int) -> None:
    """Send records of the `converter` loggers at LEVEL or above to stderr, without timestamps."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    package_logger = logging.getLogger("converter")
    package_logger.handlers[:] = [handler]
    package_logger.setLevel(level)
    package_logger.propagate = False
