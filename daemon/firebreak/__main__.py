from __future__ import annotations

from firebreak.cli import main

main()
