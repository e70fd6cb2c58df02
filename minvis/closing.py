"""Base class of the resources that ``with`` closes (writers, spools)."""

from contextlib import AbstractContextManager


class ClosedOnExit(AbstractContextManager):
    """``with obj:`` returns ``obj`` and calls ``obj.close()`` on the way out, error or not."""

    def close(self) -> None:
        raise NotImplementedError

    def __exit__(self, *exc_info: object) -> None:
        self.close()
