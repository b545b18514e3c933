"""`python -m servicecontrol_server`: the `servicecontrol` command (how `serve` starts its
worker processes, with the interpreter it runs on)."""

from .cli import main

raise SystemExit(main())
