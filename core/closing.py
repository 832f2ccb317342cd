"""``ClosesOnExit``: what makes every store a context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class ClosesOnExit:
    """``with store:`` gives the store itself and closes it on the way out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
