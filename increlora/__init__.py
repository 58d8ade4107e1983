"""IncreLoRA: incremental rank allocation for LoRA, with LoRA/AdaLoRA baselines, on GLUE."""

__version__ = "0.1.0"
