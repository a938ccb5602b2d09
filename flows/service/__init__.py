"""The always-on service: served deployments, the housekeeping loop, the supervisor."""
