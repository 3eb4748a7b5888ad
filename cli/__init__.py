"""The ``provision`` command: an entrypoint beside ``api`` and ``worker``."""
