"""Text files from users (manifests, query lists) decoded as UTF-8, or one clear error."""

from __future__ import annotations

from cart_pipeline.core.errors import InputError


def decode_utf8(raw: bytes, name: str, header_lines: int | None = None) -> str:
    """``raw`` as UTF-8 (a byte-order mark is dropped); otherwise an :class:`InputError`
    naming the file, the line (and for a table with ``header_lines``, the data row) and the
    offending bytes."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        bad = raw[error.start : error.end].hex(" ")
        row = f", data row {line - header_lines}" if header_lines is not None else ""
        raise InputError(
            f"{name} is not UTF-8: line {line}{row}, column {column} (byte offset "
            f"{error.start}) holds the bytes {bad}; save the file as UTF-8"
        ) from None
