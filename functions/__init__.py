"""lrowatch: track Google Cloud long-running operations serverlessly."""

__version__ = "0.2.0"  # the distribution's version (pyproject.toml reads it from here)
