"""The web app: the events API (flows/web/api.py) and the customer- and team-facing pages.

Build it with :func:`flows.web.app.create_app`.
"""
