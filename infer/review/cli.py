"""`dermaseg review OUT_DIR`: serve the review desk on 127.0.0.1, or export corrections."""

from __future__ import annotations

import socket
import webbrowser
from pathlib import Path

import typer
from rich.markup import escape

from dermaseg.console import err_console, print_json
from dermaseg.errors import DermasegError
from dermaseg.infer.review.export import export_corrections
from dermaseg.infer.review.folder import PlanFolder

REVIEW_MODULES = ("starlette", "uvicorn")


def require_review_extra() -> None:
    from importlib.util import find_spec

    missing = [m for m in REVIEW_MODULES if find_spec(m) is None]
    if missing:
        raise DermasegError(
            f"`dermaseg review` needs the [review] extra (missing {', '.join(missing)}): "
            "pip install 'dermaseg[review]'"
        )


def loopback_socket(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (`port` 0: a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise DermasegError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror})") from None
    sock.listen(64)
    return sock


def serve(folder: PlanFolder, port: int, open_browser: bool) -> None:
    """Run the server until Ctrl-C; prints the URL (with its token) on stdout."""
    require_review_extra()
    import uvicorn

    from dermaseg.infer.review.app import create_app, new_token

    sock = loopback_socket(port)
    port = sock.getsockname()[1]
    token = new_token()
    url = f"http://127.0.0.1:{port}/?token={token}"
    app = create_app(folder, token, port)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    print(url, flush=True)
    err_console.print(
        f"Review desk for {escape(str(folder.root))}: open the URL above (Ctrl-C stops it)"
    )
    if open_browser:
        webbrowser.open(url)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: stopping is normal
        pass
    finally:
        sock.close()
    err_console.print("Review desk stopped")


def review_command(
    out_dir: Path = typer.Argument(..., help="The --out folder of `dermaseg plan`."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port (0: a free one)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
    export: Path | None = typer.Option(
        None,
        "--export",
        help="Write the corrected photos as a training dataset (images, masks, dataset.yaml) "
        "into this new folder, and exit.",
    ),
    as_json: bool = typer.Option(False, "--json", help="With --export: print a JSON summary."),
) -> None:
    """Review and correct plans in the browser: paint the mask, save and re-plan, export.

    Serves OUT_DIR on 127.0.0.1 only, with a random token in the URL; nothing outside OUT_DIR
    is read or written. Ctrl-C stops it.
    """
    folder = PlanFolder(out_dir)
    if export is not None:
        done = export_corrections(folder, export)
        if as_json:
            print_json({"folder": str(done.folder), "photos": done.photos})
        err_console.print(
            f"Exported {len(done.photos)} corrected photo(s) to {escape(str(done.folder))}: "
            f"dermaseg train --config cpu-lite data={escape(str(done.folder))}"
        )
        return
    serve(folder, port, not no_browser)
