"""Switches that choose between equivalent kernel algorithms (see minidl.backends.conv)."""
