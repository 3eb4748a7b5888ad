"""Profile photos: an upload recognised by its content (PNG, JPEG or WebP), decoded under a
pixel limit, re-encoded without its metadata at fixed sizes, and kept in the database so
any web process serves it."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import and_, delete, exists, insert, select
from sqlalchemy.orm import Session, aliased

from provisioning.access.auth import Actor
from provisioning.core.config import settings
from provisioning.core.errors import FieldError, InvalidInput, NotFound, UnsupportedMediaType
from provisioning.core.models import utcnow
from provisioning.members.models import Membership
from provisioning.profile.details import photo_url
from provisioning.profile.models import ProfilePhoto

FORMATS = ("PNG", "JPEG", "WEBP")  # what an upload may be, as Pillow names what it finds
SIZES = (512, 128)  # pixels a side; the first is served unless another is asked for
MEDIA_TYPE = "image/jpeg"


@dataclass(frozen=True)
class Photo:
    data: bytes
    media_type: str
    etag: str


def _refused(message: str, code: str) -> InvalidInput:
    return InvalidInput([FieldError("body", message, code)], detail=message)


def decode(upload: bytes) -> Image.Image:
    """The upload as an image, or a refusal naming why: not an image of an accepted kind, or
    more pixels than ``photo_max_pixels`` (checked from the header, before decoding)."""
    max_pixels = settings().photo_max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(upload), formats=FORMATS)
            if image.width * image.height > max_pixels:
                raise _refused(f"The image is {image.width}×{image.height} pixels; at most "
                               f"{max_pixels:,} pixels are accepted.", "too_many_pixels")
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refused(f"The image decodes to more than {max_pixels:,} pixels.",
                       "too_many_pixels") from None
    except UnidentifiedImageError:
        raise UnsupportedMediaType(
            "Send a PNG, JPEG or WebP image (recognised by its content, not its name).",
            errors=[FieldError("body", "Not a PNG, JPEG or WebP image.", "not_an_image")]
        ) from None
    except (OSError, SyntaxError, ValueError):
        raise _refused("The image is damaged or truncated.", "broken_image") from None
    return image


def encode(image: Image.Image, size: int) -> bytes:
    """A square JPEG of ``size`` pixels a side: turned upright, cropped to the centre, and
    written afresh, so nothing of the upload's metadata (EXIF, GPS, comments) is kept."""
    upright = ImageOps.exif_transpose(image)
    if upright.mode in ("RGBA", "LA", "P"):
        upright = upright.convert("RGBA")
        flat = Image.new("RGB", upright.size, (255, 255, 255))
        flat.paste(upright, mask=upright.getchannel("A"))
        upright = flat
    square = ImageOps.fit(upright.convert("RGB"), (size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    square.save(out, "JPEG", quality=85, optimize=True)  # no exif=, no icc_profile=
    return out.getvalue()


def set_photo(session: Session, actor: Actor, upload: bytes) -> str:
    """Replace the caller's photo; returns its URL."""
    image = decode(upload)
    now = utcnow()
    encoded = {size: encode(image, size) for size in SIZES}
    etag = hashlib.sha256(encoded[SIZES[0]]).hexdigest()[:32]
    session.execute(delete(ProfilePhoto).where(ProfilePhoto.identity_id == actor.identity_id))
    session.execute(insert(ProfilePhoto), [
        {"identity_id": actor.identity_id, "size": size, "media_type": MEDIA_TYPE,
         "etag": f"{etag}-{size}", "data": data, "updated_at": now}
        for size, data in encoded.items()])
    url = photo_url(actor.identity_id, etag)
    assert url is not None
    return url


def remove_photo(session: Session, actor: Actor) -> None:
    session.execute(delete(ProfilePhoto).where(ProfilePhoto.identity_id == actor.identity_id))


def read_photo(session: Session, actor: Actor, identity_id: int, size: int | None) -> Photo:
    """An identity's photo, for itself or for whoever shares an account with it."""
    if size is not None and size not in SIZES:
        raise InvalidInput([FieldError("size", f"Use one of {', '.join(map(str, SIZES))}.",
                                       "invalid_size")])
    mine, theirs = aliased(Membership), aliased(Membership)
    shares_an_account = exists(select(mine.id).join(theirs, and_(
        theirs.account_id == mine.account_id, theirs.identity_id == identity_id))
        .where(mine.identity_id == actor.identity_id))
    query = select(ProfilePhoto.data, ProfilePhoto.media_type, ProfilePhoto.etag).where(
        ProfilePhoto.identity_id == identity_id, ProfilePhoto.size == (size or SIZES[0]))
    if identity_id != actor.identity_id:
        query = query.where(shares_an_account)
    row = session.execute(query).first()
    if row is None:
        raise NotFound("No such photo.")
    return Photo(data=row.data, media_type=row.media_type, etag=row.etag)
