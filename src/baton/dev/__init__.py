"""Development helpers shipped with the package: the demo model repository, and a real
``baton serve`` process for integration tests and benchmarks."""

__all__: list[str] = []
