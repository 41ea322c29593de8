"""``python -m wmprobe`` runs the command line."""

from .cli import main

main()
