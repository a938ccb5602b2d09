"""Touchpoints: customer touch points written as code and run as Prefect flows."""

__version__ = "0.1.0"
