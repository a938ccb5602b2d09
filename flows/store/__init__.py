"""The Touchpoints store (separate from Prefect's own database).

* ``tables``     the SQLAlchemy models
* ``db``         ``Store`` (engine + sessions for one URL), ``open_store``, migrations
* ``audit``      the append-only, hash-chained audit trail
* ``customers``  the customer directory, its import and the preferences
* ``migrations`` the Alembic environment and versions
"""

from flows.store.db import Store, open_store

__all__ = ["Store", "open_store"]
