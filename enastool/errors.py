"""The one exception type for errors a user can cause."""


class EnasError(Exception):
    """A user-caused error with a one-line message naming the place and the fix.

    The CLI prints ``str(error)`` and exits with status 2; it never shows a traceback for it.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class EncodingError(EnasError):
    """An invalid architecture encoding.

    ``position`` is the 1-based token position inside the record (``None`` when the error is
    about the record as a whole); ``detail`` says what was found and what was expected. Text
    readers prefix the source and record with :meth:`located`.
    """

    def __init__(self, detail: str, position: int | None = None):
        self.detail = " ".join(str(detail).split())
        self.position = position
        where = f"token {position}: " if position is not None else ""
        super().__init__(where + self.detail)

    def located(self, source: str, record: int | None = None) -> "EncodingError":
        parts = [source]
        if record is not None:
            parts.append(f"record {record}")
        if self.position is not None:
            parts.append(f"token {self.position}")
        err = EncodingError(self.detail, self.position)
        Exception.__init__(err, ": ".join(parts) + ": " + self.detail)
        return err
