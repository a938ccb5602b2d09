"""``python -m flows`` is the ``touchpoints`` command."""

from flows.cli import main

main()
