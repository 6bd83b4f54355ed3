"""Entry point of ``python -m propylon.function``."""

from propylon.function import runtime

raise SystemExit(runtime.main())
