"""Recognise pickled bytes by their content, whatever the member is called.

An archive member's name says nothing about what it holds: ``files/data.txt`` can be a
pickle that some loader would run code from. A pickle of protocol 2 or later starts with
the PROTO opcode (``0x80`` and the protocol byte), which is what ``pickle.dumps`` and
``torch.save``'s legacy format write; ``torch.save``'s default format is a zip holding a
``data.pkl``. Both are refused before the bytes reach anything that could unpickle them.
"""
from __future__ import annotations

import io
import zipfile

__all__ = ["pickle_format"]

_ZIP = b"PK\x03\x04"


def pickle_format(data: bytes | memoryview) -> str | None:
    """What pickle ``data`` is (a phrase for a message), or None when it is none we know."""
    head = bytes(data[:4])
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a pickle (protocol {head[1]})"
    if head == _ZIP:
        try:
            names = zipfile.ZipFile(io.BytesIO(bytes(data))).namelist()
        except (zipfile.BadZipFile, ValueError, OSError):
            return None
        if any(n.endswith((".pkl", ".pickle")) for n in names):
            return "a zip holding a pickle (torch.save's format)"
    return None
