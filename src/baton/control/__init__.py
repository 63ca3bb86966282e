"""The control plane: the one lifecycle table, what the manager knows of each model
(records), the pure policies that decide the next action, and the manager that reconciles
what sources offer with what serves. Nothing else changes a version's state."""

__all__: list[str] = []
