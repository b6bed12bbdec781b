"""A versioned Kedro dataset for torch checkpoints that loads with ``weights_only=True``.

Checkpoints in this project are plain dicts (config, vocabulary, ids, state_dict), so the
safe unpickler needs no allow-list; a checkpoint that needs one fails loudly instead of
executing arbitrary code. The loaded dict carries the version it was read from
(``saved_version``), so an evaluation can record exactly which model it measured.
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any

import fsspec
import torch
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from cart_pipeline.io.atomic import AtomicSaves


class TorchCheckpointDataset(AtomicSaves, AbstractVersionedDataset[dict, dict]):
    """Saves a checkpoint dict with ``torch.save``; loads it with ``weights_only=True``.

    Example catalog entry::

        image.cart_decoder:
          type: cart_pipeline.io.TorchCheckpointDataset
          filepath: data/06_models/image/cart_decoder.pt
          versioned: true
    """

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(deepcopy(fs_args) or {}))
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def load(self) -> dict:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        try:
            with self._fs.open(path, "rb") as stream:
                checkpoint = torch.load(stream, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated zip, a planted pickle, a permission problem...
            raise DatasetError(
                f"checkpoint {path} cannot be loaded: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
            ) from error
        return {**checkpoint, "saved_version": self.resolve_load_version()}

    def save(self, data: dict) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"expected a checkpoint dict, got {type(data).__name__}")
        path = get_filepath_str(self._get_save_path(), self._protocol)
        self._fs.makedirs(str(PurePosixPath(path).parent), exist_ok=True)
        data = {k: v for k, v in data.items() if k != "saved_version"}  # where it is read from
        with self._fs.open(path, "wb") as stream:  # atomic: see cart_pipeline.io.atomic
            torch.save(data, stream)
        self._invalidate_cache()

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
