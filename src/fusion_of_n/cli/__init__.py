"""The command line: parse -> build -> call the library -> print. Errors are one line naming the fix.

Every click import lives in this package: :mod:`.main` is the ``fusion-of-n`` group (subcommands load
on first use), :mod:`.common` the error boundary, logging and shared options, and one module per
command family (:mod:`.run`, :mod:`.generate`, :mod:`.serve`, :mod:`.models`, :mod:`.demo`,
:mod:`.eval`, :mod:`.train`); :mod:`.progress` draws generate's live progress line.
"""

from .main import main

__all__ = ["main"]
