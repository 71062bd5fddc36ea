"""Built-in actions, one module per family. They are registered as entry points in pyproject.toml."""
