"""``python -m fusion_of_n`` is the ``fusion-of-n`` command."""

from .cli import main

main()
