"""``python -m maintkit`` runs the maint command."""

from maintkit.cli.main import main

main()
