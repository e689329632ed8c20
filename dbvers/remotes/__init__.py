"""Where history travels: the shapes a store's objects and refs take outside the store.

L3. ``archive``: the backup archive format (a plain tar with a signed manifest);
``archive_dir``: a directory of archives as a transfer destination (a new archive)
and source (an extracted chain). The remotes of issue 13 (``directory``, ``s3``)
go here too, each one :class:`dbvers.transfer.ObjectSource` and
:class:`dbvers.transfer.Destination` over its own storage.
"""

from __future__ import annotations

from .archive import MANIFEST, SUFFIX, read_manifest
from .archive_dir import ArchiveDestination, ExtractedChain, archives, chain, extract_chain

__all__ = ["MANIFEST", "SUFFIX", "ArchiveDestination", "ExtractedChain", "archives", "chain", "extract_chain",
           "read_manifest"]
