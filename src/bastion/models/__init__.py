"""Model adapters: one interface over scikit-learn, ONNX, PyTorch, callables and endpoints."""

from bastion.models.base import Capability, ModelAdapter, ModelInfo

__all__ = ["Capability", "ModelAdapter", "ModelInfo"]
