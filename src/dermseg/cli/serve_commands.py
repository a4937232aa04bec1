"""The ``serve`` command: a local web app to look at the predicted structures of one image at a time."""

from __future__ import annotations

from pathlib import Path

import typer

from dermseg.cli.app import (
    LESION_CHECKPOINT_OPTION,
    LESION_MARGIN_OPTION,
    MAX_ASPECT_OPTION,
    MAX_SIDE_OPTION,
    OUTSIDE_LESION_OPTION,
    TILE_BATCH_OPTION,
    TILE_OVERLAP_OPTION,
    TILE_SCALE_OPTION,
    TILES_OPTION,
    app,
    console,
    err_console,
    limit_shapes,
    use_lesion_model,
    use_tiles,
)
from dermseg.errors import ConfigError


@app.command()
def serve(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="A dermseg .safetensors checkpoint, or a .onnx model from `dermseg export`."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; the default keeps the app on this computer."
    ),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    max_upload_mb: float = typer.Option(
        50.0, "--max-upload-mb", min=0.001, help="Largest image file accepted, in MB (10^6 bytes)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    tta: bool | None = typer.Option(
        None,
        "--tta/--no-tta",
        help="Average with flipped predictions (3x slower), or not (default: as the model's "
        "thresholds were tuned; off for untuned thresholds).",
    ),
    backend: str | None = typer.Option(
        None, "--backend", help="torch or onnxruntime (default: torch; onnxruntime for a .onnx model)."
    ),
    lesion_checkpoint: Path | None = LESION_CHECKPOINT_OPTION,
    lesion_margin: float | None = LESION_MARGIN_OPTION,
    outside_lesion: str = OUTSIDE_LESION_OPTION,
    max_aspect_ratio: float = MAX_ASPECT_OPTION,
    max_side_factor: float = MAX_SIDE_OPTION,
    tiles: bool = TILES_OPTION,
    tile_scale: float | None = TILE_SCALE_OPTION,
    tile_overlap: float | None = TILE_OVERLAP_OPTION,
    tile_batch: int | None = TILE_BATCH_OPTION,
    max_in_flight: int = typer.Option(
        2, "--max-in-flight", min=1, help="Images decoded, segmented or encoded at the same time."
    ),
    max_queue: int = typer.Option(
        8, "--max-queue", min=0, help="Uploads waiting for their turn; beyond them: 503 with Retry-After."
    ),
    header_timeout: float = typer.Option(
        10.0, "--header-timeout", min=0.1, help="Seconds a connection has to send a request's headers."
    ),
    body_timeout: float = typer.Option(
        60.0, "--body-timeout", min=0.1, help="Seconds an upload has to arrive whole (408 after it)."
    ),
    keep_alive_timeout: int = typer.Option(
        5, "--keep-alive-timeout", min=1, help="Seconds an idle connection is kept open between requests."
    ),
    max_connections: int = typer.Option(
        64, "--max-connections", min=1, help="Connections served at once; beyond them: 503."
    ),
    shutdown_grace: int = typer.Option(
        30, "--shutdown-grace", min=1, help="Seconds work in flight gets to finish on SIGTERM/Ctrl-C."
    ),
) -> None:
    """Serve a page where a dropped image is shown with its five structures overlaid (Ctrl-C stops)."""
    try:
        from dermseg.serve import (
            Admission,
            ConnectionLimits,
            create_app,
            is_loopback,
            listen,
            serve_forever,
            url_of,
        )
        from dermseg.serve.server import LOCAL_HOST_HEADERS
    except ImportError as err:
        raise ConfigError(
            f"dermseg serve needs the serve extra ({err.name} is missing): pip install 'dermseg[serve]'"
        ) from None
    from dermseg.inference.segmenter import Segmenter
    from dermseg.models.checkpoint import read_meta

    segmenter = Segmenter.from_path(checkpoint, backend=backend, device=device, tta=tta)
    use_lesion_model(segmenter, lesion_checkpoint, lesion_margin, outside_lesion, device, backend)
    limit_shapes(segmenter, max_aspect_ratio, max_side_factor)
    use_tiles(segmenter, tiles, tile_scale, tile_overlap, tile_batch)
    try:
        admission = Admission(max_in_flight, max_queue)
    except ValueError as err:
        raise ConfigError(f"--max-in-flight/--max-queue: {err}") from None
    limits = ConnectionLimits(header_timeout, keep_alive_timeout, max_connections, shutdown_grace)
    is_onnx = checkpoint.suffix.lower() == ".onnx"
    meta = getattr(segmenter.model, "meta", None) if is_onnx else read_meta(checkpoint)
    local = is_loopback(host)
    web_app = create_app(
        segmenter,
        max_upload_bytes=int(max_upload_mb * 1_000_000),
        meta=meta,
        source=checkpoint.name,
        allowed_hosts=LOCAL_HOST_HEADERS if local else None,
        admission=admission,
        body_timeout=body_timeout,
    )
    sock = listen(host, port)
    if not local:
        err_console.print(
            f"[bold yellow]warning:[/] listening on {host}: other computers on the network can reach this "
            "app; it has no authentication and its uploads are medical images.",
            highlight=False,
        )
    console.print(segmenter.tta_description, markup=False, highlight=False)
    console.print(f"dermseg serve: open {url_of(sock)}  (Ctrl-C stops)", highlight=False)
    try:
        serve_forever(web_app, sock, limits=limits)
    finally:
        sock.close()
