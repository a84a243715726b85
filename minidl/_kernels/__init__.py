"""Compiled kernels: typed, nogil loops over contiguous buffers, parallel on threadpool.h's pool.

The op layer (minidl.ops) validates arguments, allocates outputs and calls these; nothing here
checks shapes or dtypes beyond what the typed memoryviews enforce.
"""
