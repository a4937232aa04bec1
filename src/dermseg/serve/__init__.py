"""A small local web app over :class:`~dermseg.inference.segmenter.Segmenter` (``dermseg serve``).

Needs the ``serve`` extra: ``pip install 'dermseg[serve]'``.
"""

from __future__ import annotations

from dermseg.serve.app import DEFAULT_MAX_UPLOAD_BYTES, create_app, describe_model
from dermseg.serve.server import BackgroundServer, is_loopback, listen, serve_forever, url_of
from dermseg.serve.upload import UploadError

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "BackgroundServer",
    "UploadError",
    "create_app",
    "describe_model",
    "is_loopback",
    "listen",
    "serve_forever",
    "url_of",
]
