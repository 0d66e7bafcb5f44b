"""``python -m enastool``: the command line, as the ``enastool`` script runs it.

The commands live in the package ``enastool_cli`` (installed from ``cli/``, see pyproject.toml);
this module only hands over to it, so ``python -m enastool`` works wherever the script is not
on PATH (a virtual environment not activated, a notebook's ``!python -m enastool ...``).
"""

from enastool_cli.main import main

main()
