"""Bulk import of members (SPEC section 6): a file of people becomes members, one chunk per
transaction.

Where each step lives: ``options`` (what an import may ask for), ``kind`` (the import
as a job kind: its turn, progress and view), ``upload`` (the API's side: the upload
stored in parts, committing a dry run, the row report, under the import's own URL),
``normaliser`` (the upload as it streams in), ``formats`` (columns, media types, the
header), ``readers`` (the stored file read back as rows), ``checks`` (one row against
the member rules), ``planning`` (the worker's chunk loop and checkpoint), ``deciding``
(each row's outcome against the database), ``parts`` (writing a planned part) and
``stored`` (the stored file as a stream).

The upload is normalised to UTF-8 as it streams in and stored in the database
in parts, so any worker on any machine can read it. A worker then reads it a
chunk at a time; each chunk is checked, de-duplicated (first row wins), planned
against the database (R2 one paid membership per email, R7/R8 seats in file
order) and written set-based together with the job's checkpoint, in one
transaction. A worker killed at any point resumes from the last checkpoint: no
row is lost and none is written twice.

A dry run plans every row the same way and writes nothing but its report and
the checked rows; committing it applies that snapshot without a new upload.

Reading the file (§6): CSV, a JSON array or NDJSON. Pure code, no I/O of its own.

Two passes, so that a bad file is refused before anything is imported:

1. ``Normaliser`` runs over the upload as it streams in. It refuses file-level
   problems (``FileProblem``: size, encoding, binary data, no email column, broken
   JSON array) and turns what it accepts into UTF-8 without BOM, with every line
   ending ``\\n`` or ``\\r\\n`` (a lone ``\\r``, as old Mac spreadsheets write, becomes
   ``\\n``). That is the only form ``read_rows`` ever sees.
2. ``read_rows`` streams ``SourceRow`` values out of the stored data, each with the
   ``Position`` to resume after it, and ``check_row`` turns one into an ``ImportRow``
   or the list of everything wrong with it (``RowError``).

How the edge cases are decided:

- The CSV header is the first non-blank *physical* line (a line of only whitespace,
  ``,`` and ``;`` is blank); column names spanning lines are not supported. An Excel
  ``sep=;`` line before it sets the delimiter; otherwise the delimiter is whichever of
  ``,`` ``;`` and tab occurs most often outside quotes in the header (``,`` on a tie).
- Binary data: any NUL character, a known binary signature at the start (ZIP/xlsx,
  xls, PDF, PNG, JPEG, GIF, gzip), or more than ``_MAX_CONTROL_CHARACTERS`` of
  ``\\x01-\\x08``, ``\\x0e-\\x1f`` in the first ``_CONTROL_WINDOW`` characters. Tab, CR,
  LF, VT and FF are never counted.
- A CSV or NDJSON line longer than ``MAX_LINE_LENGTH`` characters, or a JSON array
  element longer than that, is refused as ``line_too_long`` so memory stays bounded
  (``too_large`` is only ever the size of the whole file).
- A row that cannot be read at all (a non-object JSON element, a broken NDJSON line,
  a CSV row that runs past ``MAX_LINE_LENGTH`` characters because a quote was never
  closed) is still yielded, as ``values == {INVALID_ROW: message}``; ``check_row``
  reports it as ``invalid_row`` with that message.
"""
