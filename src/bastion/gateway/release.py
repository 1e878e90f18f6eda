"""What ``bastion serve`` serves: a registered release whose signature verifies against keys
pinned outside the registry database, and whose signed gate report passed.

:func:`load_release` exports the version's files from the registry (each re-hashed against its
digest), verifies the OpenSSF bundle over the whole folder (model files, report, model card,
ML-BOM) with the trusted keys, reads the gate verdict from the signed ``report.json``, and
loads the model through :func:`bastion.models.loading.load_model` (which scans it first). Any
failed condition raises :class:`ServeRefusedError` naming it; nothing is served.

:class:`AliasWatcher` follows an alias (``cancer@production``): when it moves, the new version
goes through the same checks before it replaces the one being served; a version that fails
them is refused (and audited) and the old one keeps serving.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.exceptions import BastionError

if TYPE_CHECKING:
    from bastion.governance.keys import TrustedKey
    from bastion.governance.registry import ModelVersion, Registry
    from bastion.models.base import ModelAdapter

__all__ = ["AliasWatcher", "ServeRefusedError", "ServedRelease", "load_release"]

_log = logging.getLogger(__name__)


class ServeRefusedError(BastionError, PermissionError):
    """A release failed a condition for serving (signature, gate, scan)."""


@dataclass(frozen=True)
class ServedRelease:
    """A release that passed every check, with its loaded model."""

    version: ModelVersion
    model: ModelAdapter
    folder: Path
    report: dict[str, Any]
    key_id: str

    @property
    def ref(self) -> str:
        return self.version.ref


def load_release(
    registry: Registry,
    ref: str,
    trusted_keys: Sequence[TrustedKey],
    *,
    workdir: str | Path | None = None,
) -> ServedRelease:
    """Export, verify and load the release ``ref``.

    Parameters:
        registry: the registry, opened as the serving identity.
        ref: ``name@alias``, ``name@version`` or ``name``.
        trusted_keys: public keys pinned in the configuration or a keyring file.
        workdir: where the release is exported (default: a new temporary folder).

    Raises:
        ServeRefusedError: no trusted key, a signature that does not verify, a missing or
            failed gate report, or a model that does not scan clean.
    """
    from bastion.exceptions import UnsafeArtifactError
    from bastion.governance.signing import verify_folder
    from bastion.models.loading import load_model

    if not trusted_keys:
        raise ServeRefusedError(
            "no trusted signing key is pinned (signing.trusted_keys / signing.keyring in "
            "bastion.yaml, or --keyring / --trusted-key): refusing to serve unverified models"
        )
    version = registry.get(ref)
    base = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="bastion-serve-"))
    folder = base / f"{version.name}-{version.version}"
    if folder.exists():
        shutil.rmtree(folder)
    registry.export(version.ref, folder)
    signature = verify_folder(folder, list(trusted_keys))
    if not signature.ok:
        raise ServeRefusedError(
            f"{version.ref}: its signature does not verify with the pinned keys: "
            + "; ".join(signature.problems[:3])
        )
    report_path = folder / "report.json"
    if not report_path.is_file():
        raise ServeRefusedError(f"{version.ref}: the release holds no signed gate report")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    verdict = report.get("verdict", {})
    if verdict.get("passed") is not True:
        reasons = "; ".join(verdict.get("reasons", [])[:3]) or "no verdict"
        raise ServeRefusedError(f"{version.ref}: its signed gate report did not pass: {reasons}")
    model_dir = folder / "model"
    try:
        model = load_model(model_dir if model_dir.is_dir() else folder, name=version.name)
    except UnsafeArtifactError as err:
        raise ServeRefusedError(f"{version.ref}: {err}") from err
    model.info.details["version"] = str(version.version)
    return ServedRelease(version, model, folder, report, str(signature.key_id))


class AliasWatcher:
    """Poll an alias; verify a moved alias's new version before swapping it in.

    ``on_swap(release)`` runs with each new verified release (raising a
    :class:`~bastion.exceptions.BastionError` refuses it, with nothing swapped);
    ``on_refused(ref, error)`` runs with each refused one (the old release keeps serving).
    """

    def __init__(
        self,
        registry: Registry,
        ref: str,
        trusted_keys: Sequence[TrustedKey],
        current: ServedRelease,
        on_swap: Callable[[ServedRelease], None],
        on_refused: Callable[[str, Exception], None] | None = None,
        interval_s: float = 10.0,
    ) -> None:
        self.registry = registry
        self.ref = ref
        self.trusted_keys = list(trusted_keys)
        self.current = current
        self.on_swap = on_swap
        self.on_refused = on_refused
        self.interval_s = interval_s
        self._refused: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_once(self) -> ServedRelease | None:
        """Look at the alias now; returns the new release when it was swapped in."""
        target = self.registry.get(self.ref)
        if target.id == self.current.version.id or target.id in self._refused:
            return None
        try:
            fresh = load_release(self.registry, target.ref, self.trusted_keys)
            # the gateway may refuse it too (a configured reference profile it lacks); then
            # nothing was swapped and the old release keeps serving
            self.on_swap(fresh)
        except BastionError as err:
            self._refused.add(target.id)
            _log.error("not serving %s: %s", target.ref, err)
            self.registry.audit.append(
                self.registry.identity.name,
                "serve.swap.refused",
                f"model:{target.ref}",
                {"alias": self.ref, "reason": str(err)},
            )
            if self.on_refused is not None:
                self.on_refused(target.ref, err)
            return None
        previous = self.current
        self.current = fresh
        self.registry.audit.append(
            self.registry.identity.name,
            "serve.swap",
            f"model:{fresh.ref}",
            {"alias": self.ref, "previous": previous.ref, "key_id": fresh.key_id},
        )
        return fresh

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                try:
                    self.check_once()
                except Exception:  # keep watching: a registry hiccup must not stop serving
                    _log.exception("alias watcher for %s", self.ref)

        self._thread = threading.Thread(target=loop, name="bastion-alias-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
