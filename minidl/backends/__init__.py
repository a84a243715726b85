"""Backend switches and queries (torch.backends' names that apply to minidl), and the switches
that choose between equivalent kernel algorithms (minidl.backends.conv)."""
