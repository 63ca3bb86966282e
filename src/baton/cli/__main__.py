"""``python -m baton.cli``: the same as the ``baton`` command."""

from baton.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
