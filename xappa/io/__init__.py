"""Safe file access: what xappa reads (names, hashes, YAML, torch files, zarr) and where it writes.

:mod:`xappa.io.integrity` checks the files xappa reads; :mod:`xappa.io.outputs` marks what
xappa writes and refuses to replace anything it did not write. The layer imports nothing
else of xappa.
"""
