"""Evasion attacks."""

from bastion.attacks.evasion import apgd, auto, fgsm, pgd  # noqa: F401  (white-box attacks)
from bastion.attacks.evasion import hopskipjump as hopskipjump  # black-box
from bastion.attacks.evasion import square as square  # black-box


def release_cuda_graph_memory() -> None:
    """Let go of the memory this thread's CUDA graph captures share (white-box attacks on
    CUDA keep it cached for the next attack); ``torch.cuda.empty_cache()`` then returns it
    to the driver once no graph of it is alive. Does nothing where no graph ran (and
    imports torch only when the attacks already have)."""
    import sys

    graphs = sys.modules.get("bastion.attacks.evasion._graphs")
    if graphs is not None:
        graphs.release_pool()
