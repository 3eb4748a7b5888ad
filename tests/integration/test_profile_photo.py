"""Profile photos: recognised by content, decoded under a pixel limit, re-encoded without
metadata, kept in the database and served with an ETag to whoever shares an account."""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.conftest import Stack


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)


def _png_with_metadata() -> bytes:
    info = PngInfo()
    info.add_text("Author", "SECRET-AUTHOR-MARK")
    out = io.BytesIO()
    Image.new("RGBA", (300, 200), (200, 30, 30, 255)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def _jpeg_with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x013B] = "SECRET-ARTIST-MARK"  # Artist
    exif[0x0112] = 6  # Orientation: turned, so the re-encoding must turn it upright
    out = io.BytesIO()
    Image.new("RGB", (400, 300), (30, 30, 200)).save(out, "JPEG", exif=exif)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _decompression_bomb() -> bytes:
    """A PNG of a few hundred bytes that claims 100,000 × 100,000 pixels."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + _chunk(b"IEND", b""))


def _put(stack: Stack, headers: dict[str, str], body: bytes, media: str) -> Any:
    return stack.api.simulate_put("/v1/me/photo", body=body,
                                  headers={**headers, "Content-Type": media})


@pytest.mark.parametrize(("upload", "media", "mark"), [
    (_png_with_metadata, "image/png", b"SECRET-AUTHOR-MARK"),
    (_jpeg_with_exif, "image/jpeg", b"SECRET-ARTIST-MARK")], ids=["png", "jpeg"])
def test_a_photo_is_re_encoded_without_its_metadata(stack: Stack, upload: Any, media: str,
                                                    mark: bytes):
    admin = stack.create_account()
    body = upload()
    assert mark in body
    put = _put(stack, admin.headers, body, media)
    assert put.status_code == 200, put.text
    url = put.json["photo_url"]
    assert stack.api.simulate_get("/v1/me", headers=admin.headers).json["photo_url"] == url

    served = stack.api.simulate_get(url, headers=admin.headers)
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert mark not in served.content
    image = Image.open(io.BytesIO(served.content))
    assert image.format == "JPEG" and image.size == (512, 512)
    assert "exif" not in image.info and not image.getexif()
    small = stack.api.simulate_get(url.split("?")[0] + "?size=128", headers=admin.headers)
    assert Image.open(io.BytesIO(small.content)).size == (128, 128)

    etag = served.headers["etag"]
    assert "no-store" not in served.headers["cache-control"]
    cached = stack.api.simulate_get(url, headers={**admin.headers, "If-None-Match": etag})
    assert cached.status_code == 304 and not cached.content


def test_only_someone_sharing_an_account_sees_a_photo(stack: Stack):
    admin, stranger = stack.create_account(), stack.create_account()
    url = _put(stack, admin.headers, _png_with_metadata(), "image/png").json["photo_url"]
    assert stack.api.simulate_get(url, headers=stranger.headers).status_code == 404
    assert stack.api.simulate_get(url).status_code == 401
    assert stack.api.simulate_delete("/v1/me/photo", headers=admin.headers).status_code == 204
    assert stack.api.simulate_get(url, headers=admin.headers).status_code == 404


def _problem(result: Any, status: int, code: str) -> None:
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/problem+json")
    assert result.json["errors"][0]["field"] == "body", result.json
    assert result.json["errors"][0]["code"] == code or result.json["code"] == code, result.json


def test_what_is_not_a_photo_is_refused_clearly(stack: Stack):
    admin = stack.create_account()
    renamed = _put(stack, admin.headers, b"name,email\nAda,ada@example.com\n" * 10, "image/png")
    _problem(renamed, 415, "not_an_image")
    bomb = _put(stack, admin.headers, _decompression_bomb(), "image/png")
    _problem(bomb, 422, "too_many_pixels")
    huge = _put(stack, admin.headers, os.urandom(8 * 1024 * 1024), "image/jpeg")
    _problem(huge, 413, "too_large")
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    _problem(_put(stack, admin.headers, gif.getvalue(), "image/png"), 415, "not_an_image")
    assert stack.api.simulate_get("/v1/me", headers=admin.headers).json["photo_url"] is None


def test_a_photo_may_be_larger_than_a_json_body(stack: Stack):
    admin = stack.create_account()
    noise = Image.frombytes("RGB", (720, 720), os.urandom(720 * 720 * 3))
    out = io.BytesIO()
    noise.save(out, "PNG")
    assert 1024 * 1024 < len(out.getvalue()) <= 2 * 1024 * 1024
    put = _put(stack, admin.headers, out.getvalue(), "application/octet-stream")
    assert put.status_code == 200, put.text
