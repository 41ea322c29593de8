"""``python -m wmprobe`` runs the command line."""

from wmprobe.cli import main

main()
