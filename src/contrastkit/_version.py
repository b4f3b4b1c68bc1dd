"""The one place the version is written (read by pyproject.toml and ``--version``)."""

__version__ = "0.2.0.dev0"
