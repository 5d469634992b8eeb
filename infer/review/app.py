"""The review desk's web app (Starlette): a page, its script and style, and small JSON endpoints
that call the same planning steps as `dermaseg plan`.

Security: every request needs the session's random token (the URL's `?token=` is exchanged for
an HttpOnly, SameSite=Strict cookie; scripts may send it as the X-Review-Token header); the Host
header must be the loopback address the server listens on (no DNS rebinding); request bodies
are bounded; the Content-Security-Policy lets the page load nothing from anywhere else; file
names from a request are looked up among the folder's plans, never joined onto a path.
"""

from __future__ import annotations

import secrets
import threading
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dermaseg.datasets.images import decode_image, encode_jpeg
from dermaseg.errors import DermasegError
from dermaseg.fileio import json_safe, parse_json
from dermaseg.infer.meta import META_KEYS, META_LABELS, check_meta
from dermaseg.infer.report_html import CSP as REPORT_CSP
from dermaseg.infer.review.export import export_corrections
from dermaseg.infer.review.folder import NotInFolder, PlanFolder, text_of
from dermaseg.infer.review.replan import replan_corrected, update_meta

COOKIE = "dermaseg_review"
HEADER = "x-review-token"
MAX_JSON_BYTES = 64 * 1024
MAX_MASK_PIXELS = 120_000_000
THUMB_PX = 200
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC = {"app.js": "text/javascript", "app.css": "text/css", "index.html": "text/html"}
EXPORT_FOLDER = "corrections-dataset"


def static_bytes(name: str) -> bytes:
    return (resources.files("dermaseg.infer.review") / "static" / name).read_bytes()


class Guard:
    """ASGI middleware: the Host check, the token, size limits and security headers."""

    def __init__(self, app: ASGIApp, token: str, hosts: set[str], max_body: int) -> None:
        self.app, self.token, self.hosts, self.max_body = app, token, hosts, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if request.headers.get("host", "") not in self.hosts:
            await self._deny(scope, receive, send, 421, "wrong host")
            return
        if not self._authorised(request):
            await self._deny(scope, receive, send, 403, "missing or wrong token")
            return
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._deny(scope, receive, send, 413, "request too large")
            return

        async def secured(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"content-security-policy" for name, _ in headers):
                    headers.append((b"content-security-policy", CSP.encode()))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                    (b"x-frame-options", b"DENY"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secured)

    def _authorised(self, request: Request) -> bool:
        given = (
            request.headers.get(HEADER)
            or request.cookies.get(COOKIE)
            or (request.query_params.get("token") if request.url.path == "/" else None)
            or ""
        )
        return secrets.compare_digest(given.encode(), self.token.encode())

    @staticmethod
    async def _deny(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
        response = PlainTextResponse(
            text, status_code=status, headers={"content-security-policy": CSP}
        )
        await response(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes even without a Content-Length."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise DermasegError(f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(folder: PlanFolder, token: str, port: int) -> Starlette:
    """The app over `folder`; `token` is required on every request; `port` is the listening
    port (for the Host check)."""
    lock = threading.Lock()  # one write at a time
    thumbs: dict[tuple[str, int], bytes] = {}

    def classes_of(stem: str) -> list[dict]:
        plan = folder.plan(stem)
        return [
            {"id": c.id, "name": c.name, "color": list(c.color), "treatable": c.treatable}
            for c in folder.taxonomy(plan).classes
        ]

    def stem_of(request: Request) -> str:
        """The `stem` query parameter, when it names a plan of the folder (else 404)."""
        return folder.check_stem(request.query_params.get("stem", ""))

    async def home(request: Request) -> Response:
        if "token" in request.query_params:
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            return response
        return Response(static_bytes("index.html"), media_type="text/html; charset=utf-8")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC or name == "index.html":
            raise NotInFolder(f"no file {name!r}")
        return Response(static_bytes(name), media_type=STATIC[name])

    async def photos(request: Request) -> Response:
        entries = await run_in_threadpool(folder.entries)
        return JSONResponse(
            {
                "folder": folder.root.name,
                "meta_fields": [{"key": k, "label": META_LABELS[k]} for k in META_KEYS],
                "photos": [e.__dict__ | {"reasons": list(e.reasons)} for e in entries],
            }
        )

    def photo_details(stem: str) -> dict:
        plan = folder.plan(stem)
        raw = folder.raw_plan(stem)
        scale = plan.photo.analysis_scale
        return json_safe(
            {
                "stem": stem,
                "photo": plan.photo.name,
                "width": plan.photo.width // scale,
                "height": plan.photo.height // scale,
                "classes": classes_of(stem),
                "meta": plan.meta,
                "corrected": folder.is_corrected(stem),
                "has_photo": folder.paths(stem)["photo"].is_file(),
                "correction": raw.get("correction"),
                "review": raw.get("review"),
                "warnings": [text_of(w) for w in raw.get("warnings") or []],
                "procedure": raw.get("procedure"),
                "treatable": {k: raw["treatable"].get(k) for k in ("area_px", "area_mm2")},
                "calibration": raw["calibration"].get("method"),
                "patches": len(plan.patches),
            }
        )

    async def details(request: Request) -> Response:
        stem = stem_of(request)
        return JSONResponse(await run_in_threadpool(photo_details, stem))

    async def file(request: Request) -> Response:
        stem, kind = stem_of(request), request.query_params.get("kind", "")
        types = {
            "photo": "image/jpeg",
            "overlay": "image/png",
            "report": "text/html; charset=utf-8",
        }
        if kind not in types:
            raise NotInFolder(f"no file kind {kind!r}")
        data = await run_in_threadpool(folder.read, stem, kind)
        # the report is a self-contained page with its own, stricter policy (inline style only)
        headers = {"content-security-policy": REPORT_CSP} if kind == "report" else None
        return Response(data, media_type=types[kind], headers=headers)

    def thumbnail(stem: str) -> bytes:
        data = folder.read(stem, "overlay")
        key = (stem, hash(data))
        if key not in thumbs:
            rgb = decode_image(data, f"{stem}.overlay.png").pixels
            height, width = rgb.shape[:2]
            factor = THUMB_PX / max(height, width)
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            thumbs[key] = encode_jpeg(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), 80)
        return thumbs[key]

    async def thumb(request: Request) -> Response:
        data = await run_in_threadpool(thumbnail, stem_of(request))
        return Response(data, media_type="image/jpeg")

    def mask_bytes(stem: str, original: bool) -> tuple[bytes, int, int]:
        mask = folder.current_mask(stem, folder.plan(stem), original=original)
        return mask.tobytes(), mask.shape[1], mask.shape[0]

    async def get_mask(request: Request) -> Response:
        """The mask to edit (`?of=model`: the model's, not the person's correction)."""
        stem = stem_of(request)
        original = request.query_params.get("of") == "model"
        data, width, height = await run_in_threadpool(mask_bytes, stem, original)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"x-width": str(width), "x-height": str(height)},
        )

    def save(stem: str, body: bytes, width: int, height: int) -> dict:
        mask = np.frombuffer(body, np.uint8).reshape(height, width)
        with lock:
            replan_corrected(folder, stem, mask)
        return photo_details(stem)

    async def put_mask(request: Request) -> Response:
        stem = stem_of(request)
        try:
            width = int(request.headers.get("x-width", ""))
            height = int(request.headers.get("x-height", ""))
        except ValueError:
            raise DermasegError("X-Width and X-Height headers are needed") from None
        plan = await run_in_threadpool(folder.plan, stem)
        scale = plan.photo.analysis_scale
        expected = (plan.photo.width // scale, plan.photo.height // scale)
        if (width, height) != expected or width * height > MAX_MASK_PIXELS:
            raise DermasegError(
                f"mask size {width}x{height}: the photo is {expected[0]}x{expected[1]}"
            )
        body = await read_body(request, width * height)
        if len(body) != width * height:
            raise DermasegError(
                f"mask has {len(body)} bytes, {width}x{height} needs {width * height}"
            )
        return JSONResponse(await run_in_threadpool(save, stem, body, width, height))

    async def put_meta(request: Request) -> Response:
        stem = stem_of(request)
        values = await json_body(request)
        meta = check_meta(values, "meta")

        def write() -> dict:
            with lock:
                update_meta(folder, stem, meta)
            return photo_details(stem)

        return JSONResponse(await run_in_threadpool(write))

    async def export(request: Request) -> Response:
        def write() -> dict:
            with lock:
                done = export_corrections(folder, folder.root / EXPORT_FOLDER, replace=True)
            return {"folder": str(done.folder), "photos": done.photos}

        return JSONResponse(await run_in_threadpool(write))

    async def json_body(request: Request) -> dict:
        # strict JSON; deep nesting is a 400, not a RecursionError
        data = parse_json(await read_body(request, MAX_JSON_BYTES), "the request body")
        if not isinstance(data, dict):
            raise DermasegError("expected a JSON object")
        return data

    async def not_in_folder(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=404)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", home),
        Route("/favicon.ico", no_icon),
        Route("/static/{name}", static),
        Route("/api/photos", photos),
        # a photo is named by its `stem` query parameter: NAME, or SUB/NAME for a folder
        # planned with --recursive (looked up among the folder's plans, never joined to a path)
        Route("/api/photo", details),
        Route("/api/photo/file", file),
        Route("/api/photo/thumb", thumb),
        Route("/api/photo/mask", get_mask, methods=["GET"]),
        Route("/api/photo/mask", put_mask, methods=["POST"]),
        Route("/api/photo/meta", put_meta, methods=["POST"]),
        Route("/api/export", export, methods=["POST"]),
    ]
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard, token=token, hosts=hosts, max_body=MAX_MASK_PIXELS + 1024)],
        exception_handlers={NotInFolder: not_in_folder, DermasegError: bad_request},
    )


def new_token() -> str:
    return secrets.token_urlsafe(24)


def served_folder(root: Path) -> PlanFolder:
    return PlanFolder(root)
