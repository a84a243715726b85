"""Backend switches and queries (torch.backends' names that apply to minidl)."""
