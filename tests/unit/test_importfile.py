"""Reading bulk-import files (§6): the upload is refused as a whole or read row by row."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from provisioning.core.errors import InvalidInput
from provisioning.core.validation import (
    MAX_NAME_LENGTH,
    normalise_email,
    plain_email,
    validated_email,
)
from provisioning.imports.checks import check_row
from provisioning.imports.formats import (
    COLUMN_ALIASES,
    COLUMNS,
    INVALID_ROW,
    MAX_LINE_LENGTH,
    MEDIA_CSV,
    MEDIA_JSON,
    MEDIA_NDJSON,
    MEDIA_TYPES,
    Catalog,
    FileProblem,
    ImportRow,
    Position,
    RowError,
    SourceRow,
)
from provisioning.imports.normaliser import Normaliser
from provisioning.imports.readers import count_rows, read_rows
from provisioning.jobs.reports import csv_safe

LIMIT = 50 * 1024 * 1024
CATALOG = Catalog(
    roles={"member": "member", "admin": "admin", "sales lead": "Sales Lead"},
    groups={"sales": "Sales", "support": "Support", "marketing": "Marketing",
            "free users": "Free users"},
    seasonal_seats=5,
)
NO_SEASONAL_SEATS = Catalog(CATALOG.roles, CATALOG.groups, seasonal_seats=0)

# One CSV with most of what spreadsheets produce: aliases, an unknown column, a quoted
# field spanning lines, blank lines and a row of only delimiters, trailing empty columns.
SAMPLE_CSV = (
    "E-mail,Full name,Team,Notes,,\n"
    "ana@example.com,Ana Souza,Sales,,,\n"
    "\n"
    'bob@example.com,"Bob\nRoberts",Support,"a note, with a comma",,\n'
    ",,,,,\n"
    "José.Núñez@example.com,José Núñez,,extra,,,,,\n"
    "carla@example.com\n"
)
SAMPLE_LINES = [2, 4, 7, 8]


def normalise(data: bytes, media: str = MEDIA_CSV, piece: int = 65_536,
              limit: int = LIMIT) -> bytes:
    """What the pipeline stores for an upload fed in pieces of the given size."""
    normaliser = Normaliser(media, limit)
    stored = b"".join(normaliser.feed(data[at:at + piece]) for at in range(0, len(data), piece))
    stored += normaliser.finish()
    assert normaliser.bytes_in == len(data)
    assert normaliser.bytes_out == len(stored)
    return stored


def problem(data: bytes, media: str = MEDIA_CSV, piece: int = 65_536,
            limit: int = LIMIT) -> FileProblem:
    with pytest.raises(FileProblem) as caught:
        normalise(data, media, piece, limit)
    return caught.value


def rows(data: bytes | str, media: str = MEDIA_CSV, start: Position | None = None
         ) -> list[SourceRow]:
    raw = data.encode() if isinstance(data, str) else data
    return list(read_rows(io.BytesIO(normalise(raw, media)), media, start))


def checked(**values: object) -> ImportRow | list[RowError]:
    return check_row(SourceRow(7, dict(values), Position(0, 7, 1)), CATALOG)


def imported(**values: object) -> ImportRow:
    result = checked(**values)
    assert isinstance(result, ImportRow), result
    return result


def codes(result: ImportRow | list[RowError]) -> list[tuple[str, str]]:
    assert isinstance(result, list), result
    return [(error.column, error.code) for error in result]


# --- The upload: encodings ---------------------------------------------------------------


TEXT = "email;name\r\nana@example.com;José Núñez 😀\r\n"


@pytest.mark.parametrize("piece", [1, 3, 65_536])
@pytest.mark.parametrize(
    "encoded",
    [
        TEXT.encode("utf-8"),
        TEXT.encode("utf-8-sig"),
        b"\xff\xfe" + TEXT.encode("utf-16-le"),
        b"\xfe\xff" + TEXT.encode("utf-16-be"),
    ],
    ids=["utf-8", "utf-8 bom", "utf-16-le bom", "utf-16-be bom"],
)
def test_what_is_stored_is_utf8_without_bom_however_the_upload_is_cut(encoded: bytes,
                                                                      piece: int):
    assert normalise(encoded, piece=piece) == TEXT.encode("utf-8")


def test_a_second_bom_is_not_kept_as_content():
    assert normalise(b"\xef\xbb\xbf" + "\ufeffemail\n".encode()) == b"email\n"


def test_old_mac_line_ends_become_line_feeds_and_crlf_stays():
    assert normalise(b"email\rana@example.com\r", piece=1) == b"email\nana@example.com\n"
    assert normalise(b"email\r\nana@example.com\r\n", piece=1) == b"email\r\nana@example.com\r\n"


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"email\nana@example.com\nbob@ex\xe9mple.com\n", 3),  # Latin-1, not UTF-8
        (b"email\nana@example.com\n\xc3", 3),  # cut inside a character
        (b"email\n\xed\xa0\x80@example.com\n", 2),  # an encoded surrogate
        (b"\xff\xfe" + "email\nana".encode("utf-16-le") + b"\x00\xd8a\x00", 2),  # lone surrogate
        (b"\xfe\xff" + "email\n".encode("utf-16-be") + b"\x00", 2),  # odd byte count
    ],
)
@pytest.mark.parametrize("piece", [1, 65_536])
def test_text_that_is_not_utf8_or_utf16_is_refused_with_its_line(data: bytes, line: int,
                                                                 piece: int):
    found = problem(data, piece=piece)
    assert (found.code, found.line) == ("encoding", line)
    assert f"(line {line})" in found.message


# --- The upload: binary files --------------------------------------------------------------


def test_a_nul_character_makes_a_binary_file_and_names_the_line():
    found = problem(b"email\nana@example.com\nb\x00b@example.com\n")
    assert (found.code, found.line) == ("binary_file", 3)
    assert "line 3" in found.message


def test_utf16_without_bom_is_refused_with_a_hint():
    found = problem("email\nana@example.com\n".encode("utf-16-le"))
    assert found.code == "binary_file"
    assert "byte order mark" in found.message


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG image"),
        (b"PK\x03\x04\x14\x00\x06\x00", "Excel workbook"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", "Excel 97-2003"),
        (b"%PDF-1.7\n", "PDF"),
    ],
)
def test_known_binary_files_are_named(head: bytes, kind: str):
    found = problem(head + bytes(range(256)), piece=3)
    assert found.code == "binary_file"
    assert kind in found.message


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_refused(seed: int):
    data = random.Random(seed).randbytes(4096)
    assert problem(b"email\n" + data).code in ("binary_file", "encoding")


def test_more_than_four_control_characters_in_the_first_kilobyte_make_a_binary_file():
    assert problem(b"email\n" + b"a\x01\x02\x1b\x1f\x08" + b"a" * 100, piece=1).code == (
        "binary_file"
    )
    later = b"email\n" + b"a" * 1100 + b"\x01\x02\x1b\x1f\x08"  # past the first kilobyte
    assert normalise(later) == later


def test_tabs_line_ends_and_a_few_control_characters_are_text():
    data = b"email\tname\r\n" + b"ana@example.com\tAna\x0b\x0c\x1b\r\n" * 3 + b"\x1a\n"
    assert normalise(data) == data  # four counted: the most a text file may have
    assert problem(data + b"\x1b").code == "binary_file"


# --- The upload: emptiness, size, header ------------------------------------------------


@pytest.mark.parametrize(
    ("data", "media"),
    [
        (b"", MEDIA_CSV),
        (b" \r\n\t\n", MEDIA_CSV),
        (b"\xef\xbb\xbf", MEDIA_CSV),
        (b"\xff\xfe" + " \n".encode("utf-16-le"), MEDIA_CSV),
        (b",,,\n;;\n", MEDIA_CSV),
        (b"\n\n", MEDIA_JSON),
        (b"", MEDIA_NDJSON),
    ],
)
def test_a_file_with_nothing_in_it_is_empty(data: bytes, media: str):
    assert problem(data, media).code == "empty_file"


def test_a_file_over_the_limit_is_refused_as_soon_as_it_is_exceeded():
    normaliser = Normaliser(MEDIA_CSV, 100)
    normaliser.feed(b"email\n" + b"a" * 94)  # exactly the limit
    with pytest.raises(FileProblem) as caught:
        normaliser.feed(b"a")
    assert caught.value.code == "too_large"
    assert normaliser.bytes_in == 101
    assert "100 bytes" in caught.value.message


def test_a_line_longer_than_any_row_is_refused_before_it_fills_memory():
    found = problem(b"email\nana@example.com\n" + b"x" * (MAX_LINE_LENGTH + 1), piece=100_000)
    assert (found.code, found.line) == ("line_too_long", 3)
    # One piece holding the whole file must not hide the long line in its middle.
    data = b"email\n" + b"x" * (MAX_LINE_LENGTH + 1) + b"\nana@example.com\n"
    assert problem(data, piece=len(data)).line == 2


def test_a_header_without_an_email_column_names_the_columns_it_found():
    found = problem(b"\n\nName;Phone number;Team;;\nAna;123;Sales\n", piece=1)
    assert (found.code, found.line) == ("missing_email_column", 3)
    assert '"Name", "Phone number", "Team"' in found.message


def test_a_header_only_file_has_no_rows():
    assert rows("email,name\n") == []
    assert rows("email,name") == []


def test_unsupported_media_types_are_refused():
    with pytest.raises(FileProblem) as caught:
        Normaliser("application/pdf", LIMIT)
    assert caught.value.code == "unsupported_media_type"
    with pytest.raises(FileProblem):
        read_rows(io.BytesIO(b"email\n"), "text/html")


def test_every_accepted_media_type_reads_as_one_of_three():
    assert set(MEDIA_TYPES.values()) == {MEDIA_CSV, MEDIA_JSON, MEDIA_NDJSON}
    assert MEDIA_TYPES["application/vnd.ms-excel"] == MEDIA_CSV
    assert MEDIA_TYPES["application/jsonl"] == MEDIA_NDJSON


# --- CSV rows ----------------------------------------------------------------------------


def test_sample_rows_keep_their_lines_and_known_columns():
    found = rows(SAMPLE_CSV)
    assert [row.line for row in found] == SAMPLE_LINES
    assert [row.values for row in found] == [
        {"email": "ana@example.com", "name": "Ana Souza", "group": "Sales"},
        {"email": "bob@example.com", "name": "Bob\nRoberts", "group": "Support"},
        {"email": "José.Núñez@example.com", "name": "José Núñez", "group": ""},
        {"email": "carla@example.com"},
    ]
    assert [row.end.rows for row in found] == [1, 2, 3, 4]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_the_delimiter_is_sniffed_from_the_header(delimiter: str):
    text = delimiter.join(["email", "name", "group"]) + "\r\n"
    text += delimiter.join(["ana@example.com", '"Souza, Ana; Maria"', "Sales"]) + "\r\n"
    assert rows(text)[0].values == {
        "email": "ana@example.com", "name": "Souza, Ana; Maria", "group": "Sales"
    }


def test_delimiters_inside_quoted_header_names_do_not_count():
    found = rows('email;"Full name, as shown";"Team, or department"\nana@example.com;Ana;Sales\n')
    assert found[0].values == {"email": "ana@example.com"}


def test_an_excel_sep_line_sets_the_delimiter():
    found = rows("sep=;\nemail;name,with comma\nana@example.com;Ana, Souza\n")
    assert (found[0].line, found[0].values) == (3, {"email": "ana@example.com"})


@pytest.mark.parametrize(
    ("alias", "column"),
    [(alias, column) for column, aliases in COLUMN_ALIASES.items() for alias in aliases]
    + [("EMAIL", "email"), ("E_Mail", "email"), ("Email Address", "email"),
       ("USER TYPE", "user_type"), ("Seasonal-Start", "seasonal_start"), (" Lang ", "language"),
       ("Department", "group"), ("Display name", "name"), ("Email*", "email")],
)
def test_header_aliases_map_to_their_column(alias: str, column: str):
    first = "Notes" if column == "email" else "email"  # the file needs an email column
    found = rows(f'{first},"{alias}"\nx,value\n')
    assert found[0].values[column] == "value"


def test_every_canonical_name_is_its_own_header():
    header = ",".join(COLUMNS)
    found = rows(f"{header}\n{','.join(COLUMNS)}\n")
    assert found[0].values == {column: column for column in COLUMNS}


def test_when_two_columns_mean_the_same_the_first_wins():
    found = rows("Mail,email,Name,Full name\nfirst@example.com,second@example.com,A,B\n")
    assert found[0].values == {"email": "first@example.com", "name": "A"}


def test_quoted_newlines_are_one_row_and_later_lines_count_them():
    text = 'email,name\r\na@example.com,"line one\r\nline two\r\nline three"\r\nb@example.com,B\r\n'
    found = rows(text)
    assert [row.line for row in found] == [2, 5]
    assert found[0].values["name"] == "line one\r\nline two\r\nline three"
    assert found[0].end.line == 4


def test_a_quote_that_is_never_closed_spoils_one_row_and_memory_stays_bounded():
    middle = "".join(f"user{n}@example.com,User {n}\n" for n in range(40_000))
    text = 'email,name\na@example.com,"Ana\n' + middle
    found = rows(text)
    assert found[0].line == 2
    assert INVALID_ROW in found[0].values
    assert "line 2" in str(found[0].values[INVALID_ROW])
    # Reading goes on after the spoiled stretch instead of swallowing the whole file.
    assert found[-1].values["email"] == "user39999@example.com"
    assert len(found) > 1


def test_a_row_of_endless_short_quoted_fields_is_cut_off():
    # Each field stays under csv's field limit; only the row's total length stops it.
    endless = '"x' + '\n","x' * (MAX_LINE_LENGTH // 5 + 1000) + '"\n'
    found = rows("email,name\n" + endless + "ana@example.com,Ana\n")
    assert found[0].line == 2
    assert "longer than" in str(found[0].values[INVALID_ROW])
    assert found[0].end.offset < len("email,name\n") + MAX_LINE_LENGTH + 100  # not all of it
    assert found[-1].values == {"email": "ana@example.com", "name": "Ana"}


def test_rows_match_a_plain_csv_parse_of_a_large_file():
    generator = random.Random(3)
    names = ["José Núñez", "Zoë", '"Quoted" Name', "Multi\nLine", "Comma, Name", "Ivan Петров"]
    lines = ["email,name,role"]
    for n in range(6000):  # several read chunks, rows and characters across their edges
        name = generator.choice(names)
        quoted = '"' + name.replace('"', '""') + '"'
        lines.append(f"user{n}@example.com,{quoted},{generator.choice(['admin', ''])}")
    text = "\r\n".join(lines) + "\r\n"
    expected = [
        {"email": record["email"], "name": record["name"], "role": record["role"]}
        for record in csv.DictReader(io.StringIO(text, newline=""))
    ]
    assert [row.values for row in rows(text)] == expected


class CountingStream(io.RawIOBase):
    """A seekable stream over bytes that records how much was read, like the stored parts."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.largest_read = 0
        self.total_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._data.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        data = self._data.read(len(buffer))
        buffer[: len(data)] = data
        self.largest_read = max(self.largest_read, len(data))
        self.total_read += len(data)
        return len(data)


@pytest.mark.parametrize("media", [MEDIA_CSV, MEDIA_NDJSON, MEDIA_JSON])
def test_reading_streams_instead_of_loading_the_file(media: str):
    count = 40_000
    if media == MEDIA_CSV:
        data = "email\n" + "".join(f"user{n}@example.com\n" for n in range(count))
    elif media == MEDIA_NDJSON:
        data = "".join(json.dumps({"email": f"user{n}@example.com"}) + "\n" for n in range(count))
    else:
        data = json.dumps([{"email": f"user{n}@example.com"} for n in range(count)])
    stream = CountingStream(data.encode())
    reader = read_rows(io.BufferedReader(stream), media)
    first = next(reader)
    assert first.values == {"email": "user0@example.com"}
    assert stream.total_read < len(data) / 4
    assert sum(1 for _ in reader) == count - 1
    assert stream.largest_read <= 65_536


# --- Resuming ------------------------------------------------------------------------------


JSON_ARRAY = json.dumps(
    [{"E-mail": "ana@example.com", "Name": "Ana"}, 42, {"email": "bob@example.com"},
     {"mail": "carla@example.com", "Team": "Sales", "unknown": 1}, "text"],
    indent=2,
)
NDJSON = (
    '{"email": "ana@example.com", "name": "Ana"}\n'
    "\n"
    '{"email": "bob@example.com", broken\n'
    "[1, 2]\n"
    '{"Email address": "carla@example.com", "lang": "es"}\r\n'
)


@pytest.mark.parametrize(
    ("data", "media"),
    [(SAMPLE_CSV, MEDIA_CSV), ("sep=;\n\nemail;name\n\na@x.com;A\nb@x.com;B", MEDIA_CSV),
     (JSON_ARRAY, MEDIA_JSON), (NDJSON, MEDIA_NDJSON)],
)
def test_resuming_after_any_row_gives_exactly_the_rows_after_it(data: str, media: str):
    stored = normalise(data.encode(), media)
    everything = list(read_rows(io.BytesIO(stored), media))
    assert everything
    for index, row in enumerate(everything):
        stream = io.BufferedReader(CountingStream(stored))
        assert list(read_rows(stream, media, row.end)) == everything[index + 1:]


# --- Counting ------------------------------------------------------------------------------


# Lines a count by lines could get wrong: blank ones of every kind, a first cell that is
# only a delimiter, space or a non-ASCII character, and quoted rows spanning lines.
ODD_LINES = [
    "ana@example.com,Ana", "", ",,", " , ", "\t", "\u00a0,", "\ufeff", "  bob@example.com,Bob",
    ",carla@example.com", "Ünal@example.com,Ünal", "\u00a0dina@example.com", "x;y",
]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
@pytest.mark.parametrize("quoted_after", [None, 0, 500, 2999])
def test_counting_rows_gives_what_reading_them_gives(delimiter: str, quoted_after: int | None):
    generator = random.Random(7)
    lines = [delimiter.join(["email", "name"])]
    for n in range(3000):  # past one 64 KB read, the quotes starting anywhere
        line = generator.choice(ODD_LINES + [f"user{n}@example.com,User {n}"] * 6)
        lines.append(line.replace(",", delimiter))
        if n == quoted_after:
            lines.append(f'quoted{n}@example.com{delimiter}"Two{delimiter}\nlines"')
    stored = normalise(("\n".join(lines) + generator.choice(["", "\n"])).encode())
    expected = len(list(read_rows(io.BytesIO(stored), MEDIA_CSV)))
    assert count_rows(io.BytesIO(stored), MEDIA_CSV, 10**6) == expected


@pytest.mark.parametrize(("data", "media"), [(SAMPLE_CSV, MEDIA_CSV), (JSON_ARRAY, MEDIA_JSON),
                                             (NDJSON, MEDIA_NDJSON)])
def test_counting_stops_one_row_past_the_limit(data: str, media: str):
    stored = normalise(data.encode(), media)
    everything = len(list(read_rows(io.BytesIO(stored), media)))
    assert count_rows(io.BytesIO(stored), media, everything) == everything
    assert count_rows(io.BytesIO(stored), media, everything - 2) == everything - 1


def test_counting_an_empty_file_is_the_same_file_problem_as_reading_it():
    with pytest.raises(FileProblem) as caught:
        count_rows(io.BytesIO(b""), MEDIA_CSV, 10)
    assert caught.value.code == "empty_file"


# --- JSON and NDJSON -----------------------------------------------------------------------


def test_a_json_array_yields_objects_and_marks_other_elements():
    found = rows(JSON_ARRAY, MEDIA_JSON)
    assert [row.line for row in found] == [1, 2, 3, 4, 5]
    assert found[0].values == {"email": "ana@example.com", "name": "Ana"}
    assert found[1].values == {INVALID_ROW: "Element 2 is a number, not a JSON object."}
    assert found[3].values == {"email": "carla@example.com", "group": "Sales"}
    assert codes(check_row(found[4], CATALOG)) == [("row", "invalid_row")]


@pytest.mark.parametrize("piece", [1, 3, 65_536])
def test_json_pieces_may_cut_numbers_strings_and_objects(piece: int):
    data = b'[1, "x,]\\"y", 234567, {"email": "a@example.com"}, [5], null ]  \n'
    found = list(read_rows(io.BytesIO(normalise(data, MEDIA_JSON, piece)), MEDIA_JSON))
    assert [row.values.get("email") for row in found] == [None] * 3 + ["a@example.com"] + [None] * 2
    assert [str(row.values.get(INVALID_ROW)).split(" is ")[1] for row in found[:3]] == [
        "a number, not a JSON object.", "a string, not a JSON object.",
        "a number, not a JSON object.",
    ]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b'{"email": "a@example.com"}', 1),  # an object, not an array
        (b'[{"email": "a@example.com"}', 2),  # never closed
        (b'[{"email": "a@example.com"},]', 2),  # trailing comma
        (b'[{"email": "a@example.com"}] []', 2),  # data after the array
        (b'[{"email": "a@example.com"}, {"email": }]', 2),  # broken element
        (b'[{"email": "a@example.com"} {"email": "b@example.com"}]', 2),  # missing comma
        (b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]", 1),  # nested too deeply
    ],
)
@pytest.mark.parametrize("piece", [1, 65_536])
def test_broken_json_refuses_the_whole_file_naming_the_element(data: bytes, line: int,
                                                                piece: int):
    if piece == 1 and len(data) > 1000:
        piece = 997
    found = problem(data, MEDIA_JSON, piece)
    assert (found.code, found.line) == ("invalid_json", line)


def test_an_empty_json_array_has_no_rows():
    assert rows(" [ ] ", MEDIA_JSON) == []


def test_ndjson_reads_each_line_and_a_broken_line_fails_alone():
    found = rows(NDJSON, MEDIA_NDJSON)
    assert [row.line for row in found] == [1, 3, 4, 5]
    assert found[0].values == {"email": "ana@example.com", "name": "Ana"}
    assert "Line 3 is not valid JSON" in str(found[1].values[INVALID_ROW])
    assert found[2].values == {INVALID_ROW: "Line 4 is a list, not a JSON object."}
    assert found[3].values == {"email": "carla@example.com", "language": "es"}
    results = [check_row(row, CATALOG) for row in found]
    assert [isinstance(result, ImportRow) for result in results] == [True, False, False, True]


def test_a_json_array_sent_as_ndjson_is_refused_with_the_reason():
    found = problem(JSON_ARRAY.encode(), MEDIA_NDJSON)
    assert found.code == "invalid_json"
    assert "application/json" in found.message


# --- Checking rows -------------------------------------------------------------------------


def test_a_good_row_is_normalised():
    result = checked(email="  Ana.Souza@Example.COM ", name=" Ana Souza ", role="SALES LEAD",
                     group="support", language="pt_br", user_type="Full", phone="+34 600 11-22.33")
    assert result == ImportRow(7, "ana.souza@example.com", "Ana Souza", "Sales Lead", "Support",
                               "full", "pt-BR", "+34 600 11-22.33", None, None)


def test_blank_values_take_the_defaults():
    result = checked(email="bob@example.com", name=" ", role="", group="", language="",
                     user_type="", phone="", seasonal_start="")
    assert result == ImportRow(7, "bob@example.com", None, None, None, "full", None, None,
                               None, None)


def test_an_email_the_fast_check_does_not_cover_still_goes_through_the_validator():
    result = checked(email="josé.núñez@exämple.com")
    assert isinstance(result, ImportRow)
    assert result.email == normalise_email("josé.núñez@exämple.com")


def test_free_users_get_the_free_group():
    assert imported(email="f@example.com", user_type="free").group == "Free users"
    assert imported(email="f@example.com", user_type="FREE", group="free USERS").group == (
        "Free users"
    )


def test_seasonal_users_keep_their_window_and_other_users_drop_dates():
    seasonal = imported(email="s@example.com", user_type="seasonal",
                        seasonal_start="2026-12-01", seasonal_end="2027-01-31")
    assert seasonal.seasonal_start == date(2026, 12, 1)
    assert seasonal.seasonal_end == date(2027, 1, 31)
    full = imported(email="f@example.com", seasonal_start="not a date", seasonal_end=3)
    assert (full.seasonal_start, full.seasonal_end) == (None, None)


def test_a_phone_may_be_a_json_number():
    assert imported(email="p@example.com", phone=34600112233).phone == "34600112233"
    assert imported(email="p@example.com", phone=5551234.0).phone == "5551234"


GOOD = {"email": "a@example.com"}
SEASON = {**GOOD, "user_type": "seasonal", "seasonal_start": "2026-12-01",
          "seasonal_end": "2027-01-31"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"email": "not-an-email"}, ("email", "invalid_email")),
        ({"email": "ana@example.local"}, ("email", "invalid_email")),
        ({"name": "Ana"}, ("email", "required")),
        ({"email": "  "}, ("email", "required")),
        ({**GOOD, "name": "x" * (MAX_NAME_LENGTH + 1)}, ("name", "too_long")),
        ({**GOOD, "language": "klingon"}, ("language", "invalid_language")),
        ({**GOOD, "user_type": "guest"}, ("user_type", "invalid_user_type")),
        ({**GOOD, "role": "Owner"}, ("role", "unknown_role")),
        ({**GOOD, "group": "Finance"}, ("group", "unknown_group")),
        ({**GOOD, "user_type": "free", "group": "Sales"}, ("group", "invalid_group")),
        ({**GOOD, "group": "Free users"}, ("group", "invalid_group")),
        ({**SEASON, "seasonal_end": "31/01/2027"}, ("seasonal_end", "invalid_date")),
        ({**SEASON, "seasonal_start": "20261201"}, ("seasonal_start", "invalid_date")),
        ({**SEASON, "seasonal_start": "2026-02-30"}, ("seasonal_start", "invalid_date")),
        ({**SEASON, "seasonal_start": " "}, ("seasonal_start", "required")),
        ({**SEASON, "seasonal_start": "2027-02-01"}, ("seasonal_end", "seasonal_window")),
        ({**GOOD, "phone": "call me"}, ("phone", "invalid_phone")),
        ({**GOOD, "phone": "+1 (23)"}, ("phone", "invalid_phone")),
        ({**GOOD, "phone": "1" * 41}, ("phone", "invalid_phone")),
        ({**GOOD, "phone": True}, ("phone", "invalid_type")),
        ({**GOOD, "name": 12}, ("name", "invalid_type")),
        ({"email": ["a@example.com"]}, ("email", "invalid_type")),
        ({**SEASON, "seasonal_start": 20261201}, ("seasonal_start", "invalid_type")),
    ],
)
def test_each_problem_is_reported_with_its_column_and_code(values: dict[str, object],
                                                           expected: tuple[str, str]):
    result = checked(**values)
    assert codes(result) == [expected]
    assert isinstance(result, list) and result[0].line == 7 and result[0].message


def test_seasonal_users_need_seasonal_seats_on_the_contract():
    row = SourceRow(3, {"email": "s@example.com", "user_type": "seasonal",
                        "seasonal_start": "2026-12-01", "seasonal_end": "2027-01-31"},
                    Position(0, 3, 1))
    assert codes(check_row(row, NO_SEASONAL_SEATS)) == [("user_type", "no_seasonal_seats")]
    assert isinstance(check_row(row, CATALOG), ImportRow)


def test_every_problem_of_a_row_is_reported_at_once():
    result = checked(email="nope", role="Owner", group="Finance", language="xx", phone="abc",
                     user_type="seasonal", seasonal_start="2027-02-01",
                     seasonal_end="2027-01-01")
    assert codes(result) == [
        ("email", "invalid_email"), ("role", "unknown_role"), ("group", "unknown_group"),
        ("language", "invalid_language"), ("phone", "invalid_phone"),
        ("seasonal_end", "seasonal_window"),
    ]


def test_unknown_names_are_quoted_in_the_message_and_kept_as_the_value():
    result = checked(email="a@example.com", role="Owner", group="Finance")
    assert isinstance(result, list)
    assert [(error.value, '"' + str(error.value) + '"' in error.message) for error in result] == [
        ("Owner", True), ("Finance", True)
    ]


def test_a_long_value_is_cut_in_the_error_report():
    result = checked(email="a@example.com", name="x" * 5000)
    assert isinstance(result, list) and result[0].value is not None
    assert len(result[0].value) == 256 and result[0].value.endswith("…")


def test_duplicates_are_left_to_the_pipeline():
    first, second = rows("email\nana@example.com\nANA@example.com\n")
    assert checked(**first.values) == ImportRow(7, "ana@example.com", None, None, None,
                                                "full", None, None, None, None)
    assert isinstance(check_row(second, CATALOG), ImportRow)


def test_formulas_are_stored_as_text_and_neutralised_in_the_report():
    formula = '=HYPERLINK("http://evil.example","Click")'
    result = checked(email="a@example.com", name=formula)
    assert isinstance(result, ImportRow) and result.name == formula
    assert csv_safe(formula) == "'" + formula
    for value in ("+1+2", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert csv_safe(value) == "'" + value
    for value in ("Ana", "", " =1", "1=1", "'quoted"):
        assert csv_safe(value) == value


def test_an_unreadable_row_is_reported_as_one_problem():
    row = SourceRow(4, {INVALID_ROW: "Line 4 is not valid JSON."}, Position(0, 4, 2))
    assert check_row(row, CATALOG) == [
        RowError(4, "row", "invalid_row", "Line 4 is not valid JSON.", None)
    ]


# --- the fast path agrees with the validator --------------------------------------------------


ACCEPTED_FAST = [
    "ana@example.com", "Ana.Souza@Example.COM", "  bob@example.org\n", "x@y.co",
    "first.last+tag@sub.domain-name.example", "o'brien@example.ie", "a_b-c@a1.b2.museum",
    "user{1}|~^`#$%&*/=?!@example.com", "a" * 64 + "@example.com", "a@" + "b" * 63 + ".com",
    "x@1.2.3.example", "SUPPORT@example.com", "a@b.c",
]
TRICKY = ACCEPTED_FAST + [
    "", " ", "@", "a@", "@example.com", "plain", "a@@example.com", "a@b@example.com",
    ".a@example.com", "a.@example.com", "a..b@example.com", "a@.example.com",
    "a@example..com", "a@example.com.", "a@-example.com", "a@example-.com", "a@exa_mple.com",
    "a@example.c0m", "a@example.123", "a@123", "a@localhost", "a@example",
    "a@example.local", "a@printer.local", "a@x.test", "a@test", "a@sub.example.invalid",
    "a@foo.onion", "a@10.in-addr.arpa", "a@arpa", "a@localhost.localdomain",
    "a@ab--cd.com", "a@xn--80ak6aa92e.com", "a@xn--bcher-kva.example", "a@XN--BCHER-KVA.ch",
    "a--b@example.com", "a@a--.com", '"quoted"@example.com', '"a b"@example.com',
    '"a@b"@example.com', "Ana <ana@example.com>", "<ana@example.com>", "a b@example.com",
    "a@exa mple.com", "a@[127.0.0.1]", "a@[IPv6:::1]", "josé@example.com", "ana@exämple.com",
    "ana@bücher.de", "ana@例え.jp", "用户@例子.广告", "a@example.com\u200b", "\u200ba@example.com",
    "a\u00a0@example.com", "\u00a0a@example.com\u00a0", "a@example.com\x00", "a\n@example.com",
    "a" * 65 + "@example.com", "a@" + "b" * 64 + ".com", "ana@ｅxample.com", "ana＠example.com",
    "a@example.\u212aom", "ſ@example.com", "\u212a@example.com", "a@example.co\u0308m",
    "(comment)a@example.com", "a@example.com (comment)", "a,b@example.com", "a;b@example.com",
    "a:b@example.com", "a\\b@example.com", "a[b]@example.com", "a@b.c-m", "a@b.-com",
    "a@b.com-", "a@-", "a@b.co_uk", "A@B.CO", "a@b.xn--p1ai", "a@b.рф", "a@0.0.0.0",
    "info@example.com", "POSTMASTER@EXAMPLE.COM", "a@" + ".".join(["b" * 63] * 4) + ".com",
]


def _mutations(seed: int, count: int) -> list[str]:
    generator = random.Random(seed)
    pieces = list("aZ09.-_+@'!#$%&*/=?^`{|}~\"() ,;:<>[]\\") + [
        "K", "ſ", "é", "\u00a0", "\t", "xn--", "--", ".local", ".test", ".arpa", ".c0m", "..",
    ]
    out = []
    for _ in range(count):
        text = list(generator.choice(ACCEPTED_FAST).strip())
        for _ in range(generator.randint(1, 3)):
            at = generator.randrange(len(text) + 1)
            if generator.random() < 0.5:
                text.insert(at, generator.choice(pieces))
            elif text:
                text[min(at, len(text) - 1)] = generator.choice(pieces)
        out.append("".join(text))
    return out


def _lengths() -> list[str]:
    """Addresses on either side of the 254-character limit."""
    local = "a" * 60
    out = []
    for total in (253, 254, 255, 256):
        domain_length = total - len(local) - 1
        labels = []
        while domain_length > 0:
            label = min(domain_length, 63) if domain_length != 64 else 62
            labels.append("b" * label)
            domain_length -= label + 1
        domain = ".".join(labels)
        domain = domain[: total - len(local) - 1 - 4] + ".com"
        out.append(f"{local}@{domain}")
    return out


CORPUS = TRICKY + _mutations(11, 400) + _lengths()


def fast_email(value: str) -> str | None:
    return plain_email(value.strip())


def verdict(check: Callable[[str], str], value: str) -> str:
    """The address a check returns, or the code it refuses with."""
    try:
        return check(value)
    except InvalidInput as exc:
        return f"refused: {exc.errors[0].code}"


def test_fast_email_returns_only_what_the_validator_returns():
    agreed = 0
    for value in CORPUS:
        fast = fast_email(value)
        if fast is None:
            continue
        try:
            assert validated_email(value.strip()) == fast, value
        except InvalidInput as exc:  # pragma: no cover - the failure message
            pytest.fail(f"fast_email accepted {value!r}, the validator refused: {exc.errors}")
        agreed += 1
    assert agreed >= 50  # the corpus exercises the fast path, not only its refusals


def test_every_address_gets_the_validators_verdict_fast_path_or_not():
    for value in CORPUS:
        if value.strip():
            assert verdict(normalise_email, value) == verdict(validated_email, value.strip()), value


def test_fast_email_covers_the_common_addresses():
    assert [fast_email(value) for value in ACCEPTED_FAST] == [
        value.strip().lower() for value in ACCEPTED_FAST
    ]


@pytest.mark.parametrize(
    "value",
    ["a@example.local", "a@x.test", "a@10.in-addr.arpa", "a@foo.onion", "a@b.invalid",
     "a@localhost", "a@xn--bcher-kva.example", "a@ab--cd.com", "a" * 65 + "@example.com",
     '"a"@example.com', "josé@example.com", "a@example.c0m", "\u212a@example.com",
     "a@example.\u212aom"],
)
def test_fast_email_leaves_the_doubtful_cases_to_the_validator(value: str):
    assert fast_email(value) is None
