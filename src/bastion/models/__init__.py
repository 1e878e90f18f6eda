"""Model adapters: one interface over scikit-learn, ONNX, PyTorch, callables and remote endpoints."""

from bastion.models.base import Capability, ModelAdapter, ModelInfo

__all__ = ["Capability", "ModelAdapter", "ModelInfo"]
