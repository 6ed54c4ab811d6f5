"""`python -m wetok` runs the command line."""

from .cli import main

raise SystemExit(main())
