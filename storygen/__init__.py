"""storygen: Hydra + PyTorch Lightning experiments for fine-tuning language models on stories."""

__version__ = "0.1.0"
