"""PyTorch's torch.utils names: minidl.utils.data."""
