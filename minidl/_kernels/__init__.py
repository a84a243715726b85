"""Compiled kernels: typed, nogil, OpenMP-parallel loops over contiguous buffers.

The op layer (minidl.ops) validates arguments, allocates outputs and calls these; nothing here
checks shapes or dtypes beyond what the typed memoryviews enforce.
"""
