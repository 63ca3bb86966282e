"""The live dashboard's page, script and style sheet (served by :mod:`baton.api.http.dashboard`).

Hand-written, with no third-party JavaScript: nothing is loaded from anywhere but the server.
"""

__all__: list[str] = []
