"""Backbones (the loader), parameter accounting and the LightningModule."""
