"""L1 storage: where objects and refs live, behind two Protocols.

``base`` defines :class:`~dbvers.storage.base.ObjectStore` and
:class:`~dbvers.storage.base.RefStore` (the contract every backend meets, checked by
``tests/test_storage_contract.py``); ``local`` and ``local_refs`` are the store
directory on disk, ``memory`` keeps everything in process memory (tests, scratch
repositories). ``refbase.RefStoreBase`` is the one implementation of the ref
bookkeeping every ref store (``local_refs``, ``memory``, ``remotes.s3refs``) builds on
its own few primitives; ``refnames`` validates ref names for every backend and
``codec`` is the object encoding (zstd frames of header + body) they share.
"""
