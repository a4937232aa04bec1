"""A small local web app over :class:`~dermseg.inference.segmenter.Segmenter` (``dermseg serve``).

Needs the ``serve`` extra: ``pip install 'dermseg[serve]'``.
"""

from __future__ import annotations

from dermseg.serve.admission import Admission
from dermseg.serve.app import DEFAULT_MAX_UPLOAD_BYTES, create_app, describe_model
from dermseg.serve.server import (
    BackgroundServer,
    ConnectionLimits,
    is_loopback,
    listen,
    serve_forever,
    url_of,
)
from dermseg.serve.upload import UploadError

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "Admission",
    "BackgroundServer",
    "ConnectionLimits",
    "UploadError",
    "create_app",
    "describe_model",
    "is_loopback",
    "listen",
    "serve_forever",
    "url_of",
]
