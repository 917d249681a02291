import stat
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from serieslabeler.ingest.archive import (
    MiB,
    Problem,
    ZipEntryRefused,
    ZipLimits,
    declared_entry_count,
    iter_zip_entries,
    list_zip_entries,
    read_zip_entry,
)

CENTRAL_HEADER = b"PK\x01\x02"
CENTRAL_FLAGS_AT = 8
CENTRAL_FILE_SIZE_AT = 24


def make_zip(path: Path, files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def zeros_zip(path: Path, megabytes: int) -> Path:
    """``megabytes`` MiB of zeros in one deflated entry, written without holding them in memory."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("zeros.bin", "w") as entry:
        for _ in range(megabytes):
            entry.write(bytes(MiB))
    return path


def patch_central_header(path: Path, offset: int, fmt: str, value: int) -> None:
    """Overwrite one field of the (first) central-directory header: what zipfile believes."""
    data = bytearray(path.read_bytes())
    at = data.index(CENTRAL_HEADER) + offset
    struct.pack_into(fmt, data, at, value)
    path.write_bytes(bytes(data))


def peak_bytes(function, *args):
    tracemalloc.start()
    try:
        result = function(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def messages(problems: list[Problem]) -> dict[str, str]:
    return {where.split(":", 1)[1]: message for where, message in problems}


def test_plain_entries_are_listed_with_normalised_names(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"img/a.jpg": b"a" * 10, "img\\b.jpg": b"bb", "./c//d.png": b"ccc"})
    entries, problems = list_zip_entries(path)
    assert problems == []
    assert [(e.stored_name, e.name, e.size) for e in entries] == [
        ("img/a.jpg", "img/a.jpg", 10), ("img\\b.jpg", "img/b.jpg", 2), ("./c//d.png", "c/d.png", 3),
    ]
    assert all(e.compressed_size > 0 for e in entries)


def test_directories_are_skipped_silently(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"img/": b"", "img/a.jpg": b"a"})
    entries, problems = list_zip_entries(path)
    assert [e.name for e in entries] == ["img/a.jpg"] and problems == []


@pytest.mark.parametrize("name", ["../evil.jpg", "img/../../evil.jpg", "img\\..\\..\\evil.jpg", "../dir/"])
def test_traversal_entries_are_refused(tmp_path, name):
    path = make_zip(tmp_path / "a.zip", {name: b"x", "ok.jpg": b"y"})
    entries, problems = list_zip_entries(path)
    assert [e.name for e in entries] == ["ok.jpg"]
    assert "'..'" in messages(problems)[name]


@pytest.mark.parametrize("name", ["/etc/evil.jpg", "\\evil.jpg", "C:\\evil.jpg", "c:evil.jpg", "//server/share/x.jpg"])
def test_absolute_entries_are_refused(tmp_path, name):
    path = make_zip(tmp_path / "a.zip", {name: b"x"})
    entries, problems = list_zip_entries(path)
    assert entries == [] and "absolute" in messages(problems)[name]


def test_symlink_entries_are_refused(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        link = zipfile.ZipInfo("img/passwd.jpg")
        link.create_system = 3  # Unix
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    entries, problems = list_zip_entries(path)
    assert entries == [] and "symbolic link" in messages(problems)["img/passwd.jpg"]


def test_encrypted_entries_are_refused(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"secret.jpg": b"x" * 100})
    patch_central_header(path, CENTRAL_FLAGS_AT, "<H", 0x1)
    entries, problems = list_zip_entries(path)
    assert entries == [] and "encrypted" in messages(problems)["secret.jpg"]


def test_duplicate_names_keep_the_first(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"a.jpg": b"1", "./a.jpg": b"2"})
    entries, problems = list_zip_entries(path)
    assert [e.stored_name for e in entries] == ["a.jpg"]
    assert "second entry" in messages(problems)["./a.jpg"]


def test_entry_declaring_more_than_the_entry_limit_is_refused(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"big.jpg": b"x" * 5000, "small.jpg": b"y"})
    entries, problems = list_zip_entries(path, ZipLimits(max_entry_bytes=4000))
    assert [e.name for e in entries] == ["small.jpg"]
    assert "over the 4000 limit" in messages(problems)["big.jpg"]


def test_highly_compressible_entry_is_refused_before_reading_and_cheaply(tmp_path):
    path = zeros_zip(tmp_path / "bomb.zip", 50)
    (entries, problems), peak = peak_bytes(list_zip_entries, path)
    assert entries == []
    assert "zip bomb" in messages(problems)["zeros.bin"]
    assert peak < 5 * MiB


def test_small_entries_may_compress_well(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"blank.txt": bytes(MiB)})  # exactly 1 MiB: not ratio-checked
    entries, problems = list_zip_entries(path)
    assert [e.name for e in entries] == ["blank.txt"] and problems == []


def test_declared_total_over_the_limit_lists_nothing(tmp_path):
    path = make_zip(tmp_path / "a.zip", {f"{i}.jpg": b"x" * 1000 for i in range(3)})
    entries, problems = list_zip_entries(path, ZipLimits(max_total_bytes=2500))
    assert entries == []
    assert problems == [Problem("a.zip", "3000 bytes uncompressed in all, over the 2500 limit; nothing read")]


def test_too_many_entries_lists_nothing(tmp_path):
    path = make_zip(tmp_path / "a.zip", {f"{i}.jpg": b"x" for i in range(5)})
    entries, problems = list_zip_entries(path, ZipLimits(max_entries=4))
    assert entries == [] and problems == [Problem("a.zip", "5 entries, over the 4 limit; nothing read")]


def test_too_many_entries_is_decided_before_zipfile_parses_the_directory(tmp_path, monkeypatch):
    path = make_zip(tmp_path / "a.zip", {f"{i}.jpg": b"x" for i in range(5)})

    def no_parsing(*args, **kwargs):
        raise AssertionError("the central directory was parsed")

    monkeypatch.setattr(zipfile, "ZipFile", no_parsing)
    assert list_zip_entries(path, ZipLimits(max_entries=4))[0] == []


def test_declared_entry_count_reads_zip64_records(tmp_path):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i in range(0x10000 + 5):  # over 65,535 entries: zipfile writes zip64 records
            archive.writestr(str(i), b"")
    assert declared_entry_count(path) == 0x10000 + 5


def test_declared_entry_count_sees_through_a_signature_in_the_comment(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"a": b"1", "b": b"2"})
    with zipfile.ZipFile(path, "a") as archive:
        archive.comment = b"PK\x05\x06 looks like a record" + b"x" * 1000
    assert declared_entry_count(path) == 2


def test_not_a_zip_raises_bad_zip_file(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"not a zip at all")
    with pytest.raises(zipfile.BadZipFile):
        list_zip_entries(tmp_path / "a.zip")


def test_read_returns_the_entry(tmp_path):
    data = bytes(range(256)) * 20_000  # 5 MB: several chunks
    path = make_zip(tmp_path / "a.zip", {"a.bin": data})
    with zipfile.ZipFile(path) as archive:
        assert read_zip_entry(archive, archive.getinfo("a.bin")) == data


def test_read_stops_once_more_than_the_entry_limit_comes_out(tmp_path):
    path = zeros_zip(tmp_path / "bomb.zip", 50)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("zeros.bin")

        def read():
            with pytest.raises(ZipEntryRefused, match=f"more than {MiB} bytes"):
                read_zip_entry(archive, info, ZipLimits(max_entry_bytes=MiB))

        _, peak = peak_bytes(read)
    assert peak < 5 * MiB


def test_entry_declaring_less_than_it_holds_is_cut_off_and_refused(tmp_path):
    path = make_zip(tmp_path / "liar.zip", {"liar.bin": bytes(range(256)) * 4096})  # 1 MiB really
    patch_central_header(path, CENTRAL_FILE_SIZE_AT, "<I", 1000)
    entries, problems = list_zip_entries(path)
    assert problems == [] and entries[0].size == 1000
    with pytest.raises(ZipEntryRefused, match=r"liar\.bin"):
        list(iter_zip_entries(path, entries))


def test_damaged_entry_is_refused(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"a.bin": b"abc" * 1000}, compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    at = data.index(b"abc" * 10)
    data[at : at + 3] = b"XYZ"
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive, pytest.raises(ZipEntryRefused, match="cannot be read"):
        read_zip_entry(archive, archive.getinfo("a.bin"))


def test_iteration_yields_entries_one_at_a_time(tmp_path):
    files = {f"{i}.jpg": bytes([i]) * (i + 1) for i in range(4)}
    path = make_zip(tmp_path / "a.zip", files)
    entries, _ = list_zip_entries(path)
    read = {entry.name: data for entry, data in iter_zip_entries(path, entries)}
    assert read == files


def test_iteration_refuses_before_reading_past_the_total_limit(tmp_path):
    path = make_zip(tmp_path / "a.zip", {f"{i}.jpg": b"x" * 1000 for i in range(3)})
    entries, _ = list_zip_entries(path)
    yielded = []
    with pytest.raises(ZipEntryRefused, match=r"2\.jpg: would take the archive over 2500 bytes"):
        for entry, _data in iter_zip_entries(path, entries, ZipLimits(max_total_bytes=2500)):
            yielded.append(entry.name)
    assert yielded == ["0.jpg", "1.jpg"]


def test_iteration_refuses_entries_of_a_zip_that_changed(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"a.jpg": b"x"})
    entries, _ = list_zip_entries(path)
    make_zip(path, {"b.jpg": b"y"})
    with pytest.raises(ZipEntryRefused, match="changed since it was listed"):
        list(iter_zip_entries(path, entries))
