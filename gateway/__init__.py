"""Observability and policy gateway for the OpenAI Assistants API."""

__version__ = "0.1.0"
