"""Privacy attacks: membership inference (confidence threshold, LiRA offline with shadow
models) and attribute inference / model inversion. Importing this package registers them."""

from bastion.attacks.privacy import inversion, membership

__all__ = ["inversion", "membership"]
