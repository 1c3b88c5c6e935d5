"""omz-like: turn a Hugging Face checkpoint into OpenVINO IR that is proven against PyTorch."""

__version__ = "0.1.0"
