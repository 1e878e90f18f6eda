"""``python -m bastion``: the ``bastion`` command, for environments without its script."""

from bastion.cli.main import run

raise SystemExit(run())
