"""Scanners for model formats that are not pickle streams.

Each module offers ``looks_like_<format>(data) -> bool`` (a content sniff, never the file
name) and ``scan_<format>(data, where, ctx)``, which reports into a
:class:`~bastion.supply.context.ScanContext`. None of them imports the format's own library
or deserializes what it reads.

- :mod:`.onnx`: external data outside the model folder, custom operator domains.
- :mod:`.safetensors`: header validation (offsets, sizes, dtypes, coverage).
- :mod:`.keras`: Lambda layers and custom objects in Keras configs (HDF5 and ``.keras``).
"""
