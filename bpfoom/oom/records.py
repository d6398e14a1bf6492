"""Event records read with the layout their own BPF object declares in its BTF.

A policy's ``struct policy_event`` and the kill watcher's ``struct kill_record``
are decoded field by field through the BTF codecs of the object that wrote
them, never through a layout copied into Python.  Where that BTF comes from:

* a loaded object: its own BTF;
* a pinned map (``bpfoom events``, the daemon's re-adopted policies,
  ``bpfoom explain``): the kernel's copy of the creating object's BTF, by the
  map's ``btf_id``;
* bytes with no object at hand (:meth:`bpfoom.DecisionEvent.from_bytes`):
  the BTF of the shipped object that writes such records.

Each record starts with ``schema`` and ``size``; a record whose schema this
bpfoom does not read, or whose size is not the layout's, raises
InvalidValueError saying what to rebuild, instead of being misread.
"""

from __future__ import annotations

import errno
import functools
from pathlib import Path
from typing import Any, TypedDict

from ..bpf.btf import Btf, kernel_btf
from ..bpf.errors import InvalidValueError
from ..bpf.map import map_info
from ..bpf.object import BpfObject
from ..bpf.records import RecordType

__all__ = ["RecordLayout", "RecordText"]


class RecordText(TypedDict):
    """What a record kind is called, its schema and what to do on a mismatch (RecordLayout's
    keyword arguments)."""

    what: str
    schema: int
    advice: str


class RecordLayout:
    """A :class:`RecordType` (the object layer's typed records), checked against the schema
    this bpfoom reads."""

    def __init__(self, record_type: RecordType, *, what: str, schema: int, advice: str) -> None:
        self.type = record_type
        self.what, self.schema, self.advice = what, schema, advice
        self.size = record_type.size

    @classmethod
    def from_btf(cls, btf: Btf | None, struct_name: str, fields: tuple[str, ...], *, what: str,
                 schema: int, advice: str, where: str) -> "RecordLayout":
        """The layout of ``struct struct_name`` in ``btf``; InvalidValueError if it lacks ``fields``."""
        record_type: RecordType | None = None
        if btf is not None:
            try:
                record_type = RecordType.from_btf(btf, struct_name, where=where)
            except InvalidValueError:
                pass  # reported below with the fields this reader needs
        missing = [f for f in ("schema", "size", *fields)
                   if record_type is None or f not in record_type.fields]
        if record_type is None or missing:
            raise InvalidValueError(errno.EINVAL, f"{where} declares no struct {struct_name} with "
                                    f"{', '.join(missing)} in its BTF; {advice}")
        return cls(record_type, what=what, schema=schema, advice=advice)

    @classmethod
    def of_object(cls, path: Path, struct_name: str, fields: tuple[str, ...], **how: Any
                  ) -> "RecordLayout":
        """The layout in an object file's BTF (opened, read, closed: codecs keep no pointer)."""
        with BpfObject.open(path) as obj:
            return cls.from_btf(obj.btf, struct_name, fields, where=str(path), **how)

    @classmethod
    def of_map(cls, fd: int, struct_name: str, fields: tuple[str, ...], **how: Any
               ) -> "RecordLayout | None":
        """The layout in the BTF of the object that created map ``fd``; None if it has no BTF."""
        btf_id = map_info(fd).btf_id
        if not btf_id:
            return None
        with kernel_btf(btf_id) as btf:
            return cls.from_btf(btf, struct_name, fields, where=f"BTF object {btf_id}", **how)

    def _header(self, data: bytes) -> tuple[int, int]:
        fields = self.type.codec.fields
        (schema_bit, _, schema), (size_bit, _, size) = fields["schema"], fields["size"]
        end = max(schema_bit // 8 + schema.size, size_bit // 8 + size.size)
        if len(data) < end:
            raise InvalidValueError(errno.EINVAL, f"a {len(data)}-byte record is not a {self.what}; "
                                    f"{self.advice}")
        return schema.decode(data, schema_bit // 8), size.decode(data, size_bit // 8)

    def decode(self, data: bytes) -> dict[str, Any]:
        """The record's fields by name; InvalidValueError for another schema or size."""
        schema, size = self._header(data)
        if schema != self.schema or size != self.size or len(data) < self.size:
            raise InvalidValueError(errno.EINVAL, f"{self.what} of schema {schema} and size {size} "
                                    f"(this bpfoom reads schema {self.schema}, {self.size} bytes); "
                                    f"{self.advice}")
        return self.type.decode_fields(data)


@functools.lru_cache(maxsize=None)
def shipped_layout(path: Path, struct_name: str, fields: tuple[str, ...], what: str, schema: int,
                   advice: str) -> RecordLayout:
    """:meth:`RecordLayout.of_object` for a shipped object, read once per process."""
    return RecordLayout.of_object(path, struct_name, fields, what=what, schema=schema,
                                  advice=advice)


