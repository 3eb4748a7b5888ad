"""Jobs and bulk imports: upload, progress, reports, commit and cancel."""

from __future__ import annotations

from pathlib import PurePath
from typing import BinaryIO, cast

import falcon

from api.resources import int_param, page_body, page_query
from provisioning.core.errors import FieldError, InvalidInput
from provisioning.imports import upload
from provisioning.imports.formats import MEDIA_BY_EXTENSION
from provisioning.imports.options import KIND, ImportOptions
from provisioning.jobs import results, runs

CSV = "text/csv; charset=utf-8"


def _upload(req: falcon.Request) -> tuple[BinaryIO, str | None, int | None]:
    """The file's stream and media type: the body itself, or the multipart field ``file``."""
    if not (req.content_type or "").lower().startswith("multipart/form-data"):
        return cast(BinaryIO, req.bounded_stream), req.content_type, req.content_length
    for part in req.get_media():
        if part.name == "file":
            media = MEDIA_BY_EXTENSION.get(PurePath(part.filename or "").suffix.lower())
            return part.stream, media or part.content_type, None
    raise InvalidInput([FieldError("file", "Attach the file in a field named file.",
                                   "required")])


class Imports:
    takes_files = True  # the upload is read under the import's own limit, not the body cap

    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = page_body(runs.list_jobs(
            req.context.session, req.context.actor, account_id, KIND,
            req.get_param("status"), *page_query(req)))

    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        options = ImportOptions.parse(
            {name: req.get_param(name) for name in ("dry_run", "on_existing", "invite")})
        stream, media_type, length = _upload(req)
        job = upload.import_members(req.context.session, req.context.actor, account_id,
                                     stream, media_type, options, length=length)
        resp.status = falcon.HTTP_202
        resp.location = f"/v1/jobs/{job['id']}"
        resp.media = {"job": job}


class Import:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int,
               job_id: int) -> None:
        resp.media = upload.get_import(req.context.session, req.context.actor, account_id, job_id)


class ImportRows:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int,
               job_id: int) -> None:
        resp.content_type = CSV
        resp.downloadable_as = f"job-{job_id}-rows.csv"
        resp.stream = upload.row_report(req.context.session, req.context.actor, account_id,
                                        job_id)


class ImportCommit:
    def on_post(self, req: falcon.Request, resp: falcon.Response, account_id: int,
                job_id: int) -> None:
        job = upload.commit_import(req.context.session, req.context.actor, account_id, job_id)
        resp.status = falcon.HTTP_202
        resp.location = f"/v1/jobs/{job['id']}"
        resp.media = {"job": job}


class Job:
    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        resp.media = runs.get_job(req.context.session, req.context.actor, job_id)


class JobErrors:
    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        resp.content_type = CSV
        resp.downloadable_as = f"job-{job_id}-errors.csv"
        resp.stream = runs.error_report(req.context.session, req.context.actor, job_id)


class JobCancel:
    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        resp.media = runs.cancel_job(req.context.session, req.context.actor, job_id)


class AccountJobs:
    def on_get(self, req: falcon.Request, resp: falcon.Response, account_id: int) -> None:
        resp.media = page_body(runs.list_jobs(
            req.context.session, req.context.actor, account_id, req.get_param("kind") or None,
            req.get_param("status"), *page_query(req)))


class JobResults:
    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        items, next_cursor = results.list_results(
            req.context.session, req.context.actor, job_id, req.get_param("status"),
            req.get_param("cursor"), int_param(req, "limit"))
        resp.media = {"items": items, "next_cursor": next_cursor}
