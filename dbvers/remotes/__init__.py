"""Where history travels: remotes and the shapes a store's objects and refs take outside it.

L3. A remote is an ``ObjectStore`` (``.objects``) and a ``RefStore`` (``.refs``) of
``dbvers.storage.base``, plus the format marker that makes it self-describing, so
push, fetch and clone are transfers between two such pairs:

* ``directory``: a plain directory (NAS, NFS, USB disk), the store directory's layout;
* ``s3`` (+ ``s3refs``, ``s3client``): S3 and S3-compatible stores through boto3;
* ``layout``: the key names and the marker both share;
* ``urls``: ``s3://bucket/prefix`` / a path / ``file:///path`` -> a backend.

Backups are the other shape: ``archive`` is the backup archive format (a plain tar
with a signed manifest); ``archive_dir`` is a directory of archives as a transfer
destination (a new archive) and source (an extracted chain), each one a
:class:`dbvers.transfer.ObjectSource` / :class:`dbvers.transfer.Destination`.
"""

from __future__ import annotations

from .archive import MANIFEST, SUFFIX, read_manifest
from .archive_dir import ArchiveDestination, ExtractedChain, archives, chain, extract_chain
from .directory import DirectoryRemote
from .s3 import S3Remote
from .urls import RemoteSpec, make_remote, open_remote, parse_url

Remote = DirectoryRemote | S3Remote

__all__ = [
    "MANIFEST", "SUFFIX", "ArchiveDestination", "DirectoryRemote", "ExtractedChain", "Remote", "RemoteSpec",
    "S3Remote", "archives", "chain", "extract_chain", "make_remote", "open_remote", "parse_url", "read_manifest",
]
