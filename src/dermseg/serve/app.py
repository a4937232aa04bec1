"""The local web app: a page where an image is dropped and the model's labels are overlaid.

The labels are those of the model's label set (:attr:`Segmenter.labels`): the five Task 2
structures, or a lesion, ... The page builds its toggles, colours and texts from ``/api/info``.

Routes:
    ``GET /``                                  the page (plain HTML/JS/CSS from ``static/``, no build step)
    ``GET /api/info``                          labels, colours, model description, upload limit
    ``POST /api/predict``                      multipart upload (field ``file``) -> JSON result
    ``GET /api/results/{id}/image.jpg``        the image as the page shows it
    ``GET /api/results/{id}/masks/{name}.png`` one mask, 0/255 PNG at the image size
    ``GET /api/results/{id}/masks.zip``        the masks in submission naming

Errors are JSON ``{"error": message}`` with 400 (corrupt or malformed), 403 (a POST from another
origin), 404 (unknown result), 408 (the upload took too long), 413 (too large: file size, pixel
count, aspect ratio or working long side) or 415 (not an image), and 503 with ``Retry-After``
when the server is full (:mod:`dermseg.serve.admission`). An upload only ever touches a private
:class:`tempfile.TemporaryDirectory`, removed when the request ends. Decoding, inference and
encoding run in a worker thread inside an in-flight slot, inference under a lock, and every
request keeps its own state, so concurrent uploads never mix.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dermseg.data.imageio import full_pixels, image_size
from dermseg.data.shape_limits import ImageShapeError
from dermseg.errors import DataError
from dermseg.inference.segmenter import Segmenter
from dermseg.labels import LabelSet
from dermseg.serve.admission import Admission, Busy
from dermseg.serve.results import Result, ResultStore, build_result
from dermseg.serve.upload import UploadError, megabytes, receive_upload, result_stem

logger = logging.getLogger(__name__)

#: Default upload cap, in bytes.
DEFAULT_MAX_UPLOAD_BYTES = 50 * 1_000_000

NOTICE = "Research use only. Not a medical device: not for diagnosis or treatment decisions."
PRESENCE_HELP = (
    "Presence: the highest per-pixel probability of the attribute anywhere in the image (0-1). "
    "The mask is drawn where the probability exceeds the model's threshold for that attribute."
)
_LABEL_PRESENCE_HELP = (
    "Presence: the highest per-pixel probability of the label anywhere in the image (0-1). "
    "The mask is drawn where the probability exceeds the model's threshold for that label."
)
_TASK2_TEXTS = {
    "subtitle": "Dermoscopic structures · ISIC 2018 Task 2",
    "heading": "Structures",
    "download_help": "Five 0/255 PNG masks at the image size, named ISIC_<id>_attribute_<name>.png "
    "as in the challenge submissions.",
}
AREA_HELP = "Area: the share of the image's pixels inside the predicted mask."

_STATIC = Path(__file__).resolve().parent / "static"
_PRIVATE = {"cache-control": "private, max-age=3600"}
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
        b"base-uri 'none'; frame-ancestors 'none'",
    ),
]


def describe_model(
    segmenter: Segmenter, meta: dict[str, Any] | None = None, source: str | None = None
) -> dict:
    """What the page's model panel shows.

    Args:
        segmenter: the model in use (backend, thresholds, test-time augmentation).
        meta: the checkpoint's JSON description, when known.
        source: the model file's name.

    Returns:
        ``{"fields": [[label, value], ...], "thresholds": {label: threshold}}``.
    """
    meta = meta or {}
    kwargs = meta.get("model_kwargs") or {}
    config = meta.get("config") or {}
    data = config.get("data") or {}
    fields: list[list[str]] = []

    def add(label: str, value: Any) -> None:
        if value not in (None, ""):
            fields.append([label, str(value)])

    add("Model file", source)
    add("Architecture", meta.get("arch"))
    add("Encoder", kwargs.get("encoder_name"))
    add("Encoder initialisation", meta.get("encoder_init"))
    if segmenter.labels.name != "isic2018_task2":
        add("Label set", f"{segmenter.labels.name} ({', '.join(segmenter.labels.display_names.values())})")
    add("Target encoding", segmenter.encoding)
    add("Input size", f"short side resized to {segmenter.input_size} px")
    if data.get("root"):
        limit = f" (first {data['limit']} images)" if data.get("limit") else ""
        add("Trained on", f"{Path(str(data['root'])).name or data['root']}{limit}")
    if meta.get("epoch") is not None:
        add("Checkpoint epoch", meta["epoch"])
    if meta.get("jaccard") is not None:
        add("Validation Jaccard (official)", f"{float(meta['jaccard']):.4f}")
    tuning = meta.get("tuning") or {}
    if tuning.get("overall_tuned") is not None:
        add("Thresholds", f"tuned on {tuning.get('subset', 'validation')} images")
    add("Backend", f"{segmenter.backend} on {segmenter.device}")
    add("Test-time augmentation", segmenter.tta_description)
    if segmenter.lesion_field is not None or segmenter.trained_field[0] != "fov":
        add("Field", segmenter.field_description.removeprefix("field: "))
    add("dermseg version", meta.get("dermseg_version"))
    names = segmenter.labels.names
    thresholds = {name: round(float(t), 3) for name, t in zip(names, segmenter.thresholds, strict=True)}
    return {"fields": fields, "thresholds": thresholds}


def page_texts(labels: LabelSet) -> dict[str, str]:
    """The page's texts that depend on the label set: ``subtitle``, ``heading`` (of the toggles'
    card) and ``download_help`` (what the zip holds); Task 2's are the page's own."""
    if labels.name == "isic2018_task2":
        return dict(_TASK2_TEXTS)
    example = labels.mask_name("<id>", labels.names[0])
    if labels.num_labels == 1:
        what = f"One 0/255 PNG mask at the image size, named {example}"
    else:
        pattern = labels.mask_pattern.replace("{id}", "<id>").replace("{label}", "<name>")
        what = f"{labels.num_labels} 0/255 PNG masks at the image size, named {pattern}"
    return {
        "subtitle": labels.description or labels.name,
        "heading": "Labels" if labels.num_labels > 1 else labels.labels[0].display_name,
        "download_help": f"{what} (label set {labels.name}).",
    }


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"cache-control": "no-store"})


async def _refused(request: Request, err: UploadError) -> Response:
    return _error(err.message, err.status)


def foreign_origin(request: Request) -> bool:
    """Whether a request carries an ``Origin`` header other than the server's own (``http://<Host>``):
    a page of another site posting to this server. A request without one (curl, scripts) is not."""
    origin = request.headers.get("origin")
    if origin is None:
        return False
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin.rstrip("/").lower() != own.lower()


class _SecurityHeaders:
    """Adds a strict content-security policy and no-sniff headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    segmenter: Segmenter,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    meta: dict[str, Any] | None = None,
    source: str | None = None,
    max_results: int = 32,
    allowed_hosts: list[str] | None = None,
    admission: Admission | None = None,
    body_timeout: float | None = 60.0,
) -> Starlette:
    """Build the web app around a segmenter.

    Args:
        segmenter: the model; calls to it are serialised by a lock.
        max_upload_bytes: the largest image file accepted (413 above it).
        meta: the checkpoint's description, shown in the model panel.
        source: the model file's name, shown in the model panel.
        max_results: results kept in memory for their mask and zip downloads (oldest dropped).
        allowed_hosts: accepted ``Host`` headers (guards a local server against DNS rebinding);
            ``None`` accepts any.
        admission: the in-flight and queue limits (503 beyond them); the defaults of
            :class:`~dermseg.serve.admission.Admission` when ``None``.
        body_timeout: seconds an upload's body may take to arrive (408 after it); ``None``: no limit.
            The image's aspect ratio and working size are bounded by ``segmenter.limits`` (413).

    Returns:
        An ASGI application (serve it with uvicorn, or test it with Starlette's TestClient).

    Raises:
        ValueError: ``max_upload_bytes`` or ``max_results`` is below 1.
    """
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
    store = ResultStore(max_results)
    admission = admission if admission is not None else Admission()
    inference_lock = threading.Lock()
    labels = segmenter.labels
    info = {
        "attributes": [
            {"name": a.name, "display_name": a.display_name, "colour": list(a.colour)} for a in labels.labels
        ],
        "labels": {
            "name": labels.name,
            "metric": labels.metric,
            "mask_pattern": labels.mask_pattern,
            "description": labels.description,
        },
        "texts": page_texts(labels),
        "model": describe_model(segmenter, meta, source),
        "max_upload_bytes": max_upload_bytes,
        "max_upload": megabytes(max_upload_bytes),
        "notice": NOTICE,
        "help": {
            "presence": PRESENCE_HELP if labels.name == "isic2018_task2" else _LABEL_PRESENCE_HELP,
            "area": AREA_HELP,
        },
    }

    def analyse(path: Path, filename: str) -> Result:
        with admission.slot():  # decode, inference and encoding: the memory of one image
            try:
                segmenter.limits.check_image(*image_size(path)[::-1])  # from the header, before decoding
                decoded = segmenter.read(path)  # as predict reads it: a large JPEG reduced
                with inference_lock:  # one inference at a time: the model and its threads are shared
                    prediction = segmenter.predict(decoded)
                image = full_pixels(decoded, path)  # shown at full scale
            except DataError as err:
                # Too many pixels, too elongated: 413; anything else is a broken file.
                too_big = isinstance(err, ImageShapeError) or err.message.startswith("image too large")
                status = 413 if too_big else 400
                raise UploadError(
                    f"{filename or 'The file'} could not be read: {err.message}.", status
                ) from None
            return build_result(image, prediction, result_stem(filename), filename, labels)

    async def page(request: Request) -> Response:
        return FileResponse(str(_STATIC / "index.html"), headers={"cache-control": "no-cache"})

    async def api_info(request: Request) -> Response:
        return JSONResponse(info)

    async def api_predict(request: Request) -> Response:
        if foreign_origin(request):
            return _error("Uploads from another site's page are refused.", 403)
        with tempfile.TemporaryDirectory(prefix="dermseg-serve-") as tmp:
            try:
                # streamed to a file of at most max_upload_bytes: a slow upload holds no admission
                # place (else a few clients sending a byte a second would keep every caller out)
                upload = await receive_upload(
                    dict(request.headers), request.stream(), Path(tmp), max_upload_bytes, body_timeout
                )
                with admission.admit():
                    result = await run_in_threadpool(analyse, upload.path, upload.filename)
            except Busy as err:
                response = _error(err.message, err.status)
                response.headers["retry-after"] = str(err.retry_after)
                return response
            except UploadError as err:
                return _error(err.message, err.status)
            except ClientDisconnect:
                return Response(status_code=400)
            except Exception as err:  # the page shows a message rather than a bare 500
                logger.exception("prediction failed")
                return _error(f"The analysis failed ({type(err).__name__}: {err}).", 500)
        store.add(result)
        logger.info("analysed %s (%dx%d) as %s", result.filename, result.width, result.height, result.id)
        return JSONResponse(result.to_json(request.scope.get("root_path", "") + "/"))

    def lookup(request: Request) -> Result:
        result = store.get(request.path_params["result_id"])
        if result is None:
            raise UploadError("This result is no longer available; upload the image again.", 404)
        return result

    async def result_image(request: Request) -> Response:
        result = lookup(request)
        return Response(result.display_jpeg, media_type="image/jpeg", headers=_PRIVATE)

    async def result_zip(request: Request) -> Response:
        result = lookup(request)
        disposition = f'attachment; filename="{result.zip_name}"'
        return Response(
            result.submission_zip(),
            media_type="application/zip",
            headers={**_PRIVATE, "content-disposition": disposition},
        )

    async def result_mask(request: Request) -> Response:
        result, name = lookup(request), request.path_params["attribute"]
        if name not in result.mask_pngs:
            raise UploadError(f"Unknown label {name!r}; expected one of {', '.join(labels.names)}.", 404)
        disposition = f'inline; filename="{result.mask_name(name)}"'
        return Response(
            result.mask_pngs[name],
            media_type="image/png",
            headers={**_PRIVATE, "content-disposition": disposition},
        )

    routes = [
        Route("/", page),
        Route("/api/info", api_info),
        Route("/api/predict", api_predict, methods=["POST"]),
        Route("/api/results/{result_id}/image.jpg", result_image),
        Route("/api/results/{result_id}/masks.zip", result_zip),
        Route("/api/results/{result_id}/masks/{attribute}.png", result_mask),
        Mount("/static", app=StaticFiles(directory=str(_STATIC)), name="static"),
    ]
    middleware = [Middleware(_SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(routes=routes, middleware=middleware, exception_handlers={UploadError: _refused})
