"""User-facing errors: a bad value in a config, a file or a command becomes one clear line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class StorygenError(Exception):
    """A problem the user can fix; the message names the bad value and the fix."""


def find_user_error(exc: BaseException | None) -> StorygenError | None:
    """Hydra wraps errors raised while instantiating; look through the chain for ours."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, StorygenError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a StorygenError into `error: <message>` on stderr and exit status 2, no traceback."""
    try:
        yield
    except Exception as exc:
        user_error = find_user_error(exc)
        if user_error is None:
            raise
        log.error("%s", user_error)
        print(f"error: {user_error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
