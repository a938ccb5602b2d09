"""Quality-of-service reports: figures from SQL aggregates over the store."""
