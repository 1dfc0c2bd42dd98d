"""The ``descend`` command."""
