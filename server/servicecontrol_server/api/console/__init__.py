"""The web console: pages for the whole service lifecycle, served by the server itself."""

from .app import create_app, start_console

__all__ = ["create_app", "start_console"]
