"""Downloading and verifying dataset files: against a local HTTP server, never the network."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from neurofm.data.sources import RecordingSource
from neurofm.datasets import download
from neurofm.datasets.download import RemoteArchive, RemoteFile
from neurofm.datasets.registry import (
    READ_RECORDING,
    TRUST_RECORD,
    DatasetSpec,
    availability,
    fetch,
    get_dataset,
    resolve,
)
from neurofm.errors import DatasetError

PAYLOAD = b"EEG samples, or any bytes: the checksum is what matters\n" * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test's folder; ``/truncated`` promises more bytes than it sends."""

    def do_GET(self) -> None:  # http.server's naming
        if self.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD) * 2))
            self.end_headers()
            self.wfile.write(PAYLOAD)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 over a folder; yields (base URL, folder)."""
    root = tmp_path / "served"
    root.mkdir()

    def handler(*args: object, **kwargs: object) -> _Handler:
        return _Handler(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Network allowed (only the local server exists), an empty mirror and cache; returns the cache."""
    monkeypatch.setenv("NEUROFM_OFFLINE", "0")
    monkeypatch.setenv("NEUROFM_MIRROR", str(tmp_path / "empty-mirror"))
    monkeypatch.setenv("NEUROFM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _spec(files: tuple[RemoteFile, ...], archives: tuple[RemoteArchive, ...] = ()) -> DatasetSpec:
    plan = tuple(
        RecordingSource(id=f"toy/{f.path}", paths=(Path(f.path),), reader=READ_RECORDING, subject="s1")
        for f in files
    )
    return DatasetSpec(
        name="toy", description="test data", task="none", license="CC0", homepage="https://example.org",
        citation="-", mirror_folder="toy", files=files, recording_plan=plan, archives=archives,
        checksum_source="test",
    )


def _zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> str:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, target)
    return download.hash_file(path)


def test_fetch_downloads_verifies_and_places_the_file(served: tuple[str, Path], online: Path) -> None:
    base, root = served
    (root / "rec.edf").write_bytes(PAYLOAD)
    spec = _spec((RemoteFile("sub/rec.edf", base + "rec.edf", PAYLOAD_SHA),))
    resolved = fetch(spec, progress=False)
    target = online / "toy" / "sub" / "rec.edf"
    assert resolved.complete and resolved.paths == {"sub/rec.edf": target}
    assert target.read_bytes() == PAYLOAD
    assert [s.paths for s in resolved.sources()] == [(target,)]
    assert not list(target.parent.glob(".tmp-*"))


def test_checksum_mismatch_names_file_url_and_both_checksums_and_keeps_nothing(
    served: tuple[str, Path], online: Path
) -> None:
    base, root = served
    (root / "rec.edf").write_bytes(PAYLOAD + b"tampered")
    spec = _spec((RemoteFile("rec.edf", base + "rec.edf", PAYLOAD_SHA),))
    with pytest.raises(DatasetError) as error:
        fetch(spec, progress=False)
    message = str(error.value)
    assert "toy/rec.edf" in message and base + "rec.edf" in message
    assert PAYLOAD_SHA in message and hashlib.sha256(PAYLOAD + b"tampered").hexdigest() in message
    assert "Retry" in message
    assert not (online / "toy" / "rec.edf").exists()
    assert not list((online / "toy").glob(".tmp-*"))


def test_a_truncated_download_leaves_nothing_under_the_final_name(
    served: tuple[str, Path], online: Path
) -> None:
    base, _ = served
    spec = _spec((RemoteFile("rec.edf", base + "truncated", PAYLOAD_SHA),))
    with pytest.raises(DatasetError, match=r"toy/rec.edf.*nothing was kept"):
        fetch(spec, progress=False)
    assert not (online / "toy" / "rec.edf").exists()
    assert not list((online / "toy").glob(".tmp-*"))


def test_an_http_error_names_the_file_url_and_status(served: tuple[str, Path], online: Path) -> None:
    base, _ = served
    spec = _spec((RemoteFile("rec.edf", base + "missing.edf", PAYLOAD_SHA),))
    with pytest.raises(DatasetError, match=r"toy/rec\.edf: download from .*missing\.edf failed with HTTP 404"):
        fetch(spec, progress=False)


def test_a_failed_replacement_keeps_the_previous_copy_intact(served: tuple[str, Path], online: Path) -> None:
    base, root = served
    target = online / "toy" / "rec.edf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"previous")
    (root / "rec.edf").write_bytes(b"wrong bytes")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        download.download_file(base + "rec.edf", target, PAYLOAD_SHA, label="toy/rec.edf", progress=False)
    assert target.read_bytes() == b"previous"


def test_offline_mode_refuses_the_network_with_a_clear_message(tmp_path: Path) -> None:
    assert os.environ["NEUROFM_OFFLINE"] == "1"  # set for every test by conftest
    with pytest.raises(DatasetError) as error:
        download.download_file("https://example.org/x.edf", tmp_path / "x.edf", None, label="toy/x.edf")
    message = str(error.value)
    assert "toy/x.edf" in message and "NEUROFM_OFFLINE=1 forbids network access" in message
    assert "NEUROFM_MIRROR" in message
    assert not (tmp_path / "x.edf").exists()


def test_only_http_urls_are_downloaded(online: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("local file")
    with pytest.raises(DatasetError, match="only http"):
        download.download_file(secret.as_uri(), tmp_path / "copy.txt", None, label="toy/copy.txt")


@pytest.mark.parametrize(
    "relative",
    ["../escape.edf", "/etc/passwd", "a/../../escape.edf", "a//b.edf", "C:/x.edf", "a\\..\\b", "./a.edf", ""],
)
def test_paths_that_could_escape_the_dataset_folder_are_refused(
    relative: str, online: Path, tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match="plain relative paths"):
        download.safe_join(tmp_path / "dataset", relative, what="toy")
    spec = _spec((RemoteFile(relative, "http://127.0.0.1:9/x", PAYLOAD_SHA),))
    with pytest.raises(DatasetError, match="Refusing it"):
        fetch(spec, progress=False)


def test_a_symlink_leading_out_of_the_dataset_folder_is_refused(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (dataset / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DatasetError, match=r"outside .*symlink"):
        download.safe_join(dataset, "link/rec.edf", what="toy/link/rec.edf")
    assert download.safe_join(dataset, "sub/rec.edf", what="toy") == dataset / "sub" / "rec.edf"


def test_archive_members_are_extracted_from_a_verified_archive(
    served: tuple[str, Path], online: Path
) -> None:
    base, root = served
    archive_sha = _zip(root / "bundle.zip", {"A01T.gdf": PAYLOAD, "A01E.gdf": b"evaluation"})
    spec = _spec(
        (
            RemoteFile("set/A01T.gdf", archive="bundle.zip", member="A01T.gdf"),
            RemoteFile("set/A01E.gdf", archive="bundle.zip", member="A01E.gdf"),
        ),
        (RemoteArchive("bundle.zip", base + "bundle.zip", archive_sha),),
    )
    resolved = fetch(spec, progress=False)
    assert (online / "toy" / "set" / "A01T.gdf").read_bytes() == PAYLOAD
    assert resolved.complete
    # Members are trusted through the archive's checksum and recorded; the archive is removed.
    record = download.read_sha256sums(online / "toy" / TRUST_RECORD)
    assert record["set/A01T.gdf"] == PAYLOAD_SHA
    assert not (online / "toy" / ".archives" / "bundle.zip").exists()


def test_an_archive_with_the_wrong_checksum_is_refused(served: tuple[str, Path], online: Path) -> None:
    base, root = served
    _zip(root / "bundle.zip", {"A01T.gdf": PAYLOAD})
    spec = _spec(
        (RemoteFile("A01T.gdf", archive="bundle.zip", member="A01T.gdf"),),
        (RemoteArchive("bundle.zip", base + "bundle.zip", "0" * 64),),
    )
    with pytest.raises(DatasetError, match=r"toy/bundle.zip: checksum mismatch"):
        fetch(spec, progress=False)
    assert not (online / "toy" / "A01T.gdf").exists()


def test_symlink_and_traversal_members_of_an_archive_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    _zip(archive, {"../escape.txt": b"x"}, symlinks={"link.gdf": "/etc/passwd"})
    with pytest.raises(DatasetError, match="symlink"):
        download.extract_zip_member(archive, "link.gdf", tmp_path / "out" / "link.gdf", None, label="toy")
    with pytest.raises(DatasetError, match="plain relative paths"):
        download.extract_zip_member(archive, "../escape.txt", tmp_path / "out" / "e.txt", None, label="toy")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert not (tmp_path / "escape.txt").exists()


def test_unpublished_checksums_are_refused_unless_trusted_on_first_use(
    served: tuple[str, Path], online: Path
) -> None:
    base, root = served
    (root / "rec.edf").write_bytes(PAYLOAD)
    spec = _spec((RemoteFile("rec.edf", base + "rec.edf"),))
    with pytest.raises(DatasetError, match=r"publishes no checksum.*--trust-on-first-use.*Nothing was downloaded"):
        fetch(spec, progress=False)
    assert not (online / "toy" / "rec.edf").exists()

    fetch(spec, trust_on_first_use=True, progress=False)
    assert download.read_sha256sums(online / "toy" / TRUST_RECORD) == {"rec.edf": PAYLOAD_SHA}
    assert availability(spec).files[0].state == "trusted"
    # Every later use is verified against the recorded checksum.
    (online / "toy" / "rec.edf").write_bytes(PAYLOAD + b"changed later")
    with pytest.raises(DatasetError, match="fail their checksum"):
        resolve(spec)


def test_user_given_checksums_verify_files_without_published_ones(
    served: tuple[str, Path], online: Path
) -> None:
    base, root = served
    (root / "rec.edf").write_bytes(PAYLOAD)
    spec = _spec((RemoteFile("rec.edf", base + "rec.edf"),))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch(spec, checksums={"rec.edf": "f" * 64}, progress=False)
    resolved = fetch(spec, checksums={"rec.edf": PAYLOAD_SHA}, progress=False)
    assert resolved.complete


def test_a_rar_archive_is_verified_then_left_for_the_user_to_unpack(
    served: tuple[str, Path], online: Path
) -> None:
    base, root = served
    (root / "Database.rar").write_bytes(PAYLOAD)
    spec = _spec(
        (RemoteFile("subject1.edf", archive="Database.rar", member="subject1.edf"),),
        (RemoteArchive("Database.rar", base + "Database.rar", PAYLOAD_SHA),),
    )
    with pytest.raises(DatasetError, match=r"\.rar archive.*Unpack it yourself.*--trust-on-first-use"):
        fetch(spec, progress=False)
    assert (online / "toy" / ".archives" / "Database.rar").read_bytes() == PAYLOAD
    # After unpacking by hand, trust on first use records the extracted file.
    (online / "toy" / "subject1.edf").write_bytes(b"unpacked")
    assert fetch(spec, trust_on_first_use=True, progress=False).complete


def test_verified_mirror_files_are_used_without_any_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "toy").mkdir(parents=True)
    (mirror / "toy" / "rec.edf").write_bytes(PAYLOAD)
    monkeypatch.setenv("NEUROFM_CACHE", str(tmp_path / "cache"))
    spec = _spec((RemoteFile("rec.edf", "http://127.0.0.1:9/never-contacted", PAYLOAD_SHA),))
    resolved = fetch(spec, mirror=mirror, progress=False)  # offline: any download would raise
    assert resolved.paths == {"rec.edf": mirror / "toy" / "rec.edf"}
    assert not (tmp_path / "cache" / "toy").exists()


def test_eegmat_downloads_are_verified_against_the_physionet_checksums(
    mirror_dir: Path, online: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested: list[str] = []

    class _FakeResponse(io.BytesIO):
        headers: ClassVar[dict[str, str]] = {}

        def __enter__(self) -> _FakeResponse:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    def fake_urlopen(request: object, timeout: float) -> _FakeResponse:
        requested.append(request.full_url)  # type: ignore[attr-defined]
        return _FakeResponse(b"not the PhysioNet file")

    monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(DatasetError) as error:
        fetch("eegmat", mirror=mirror_dir, progress=False)
    expected = get_dataset("eegmat").file("Subject32_1.edf").sha256
    assert "eegmat/Subject32_1.edf" in str(error.value) and expected in str(error.value)
    # Only the 4 subjects missing from the mirror are requested; the first failure stops it.
    assert requested == ["https://physionet.org/files/eegmat/1.0.0/Subject32_1.edf"]
    assert not list((online / "eegmat").glob("*.edf"))


@pytest.mark.parametrize("folder", ["eegmat", "myo_gestures", "eeglab_sample", "formats"])
def test_every_mirror_file_matches_its_folder_sha256sums(mirror_dir: Path, folder: str) -> None:
    sums = download.read_sha256sums(mirror_dir / folder / "SHA256SUMS")
    assert sums
    hashes = download.ChecksumCache(None)
    for relative, digest in sums.items():
        path = download.safe_join(mirror_dir / folder, relative, what=f"{folder}/{relative}")
        assert hashes.sha256(path) == digest, relative


def test_malformed_checksum_files_are_refused_with_the_line(tmp_path: Path) -> None:
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{PAYLOAD_SHA}  ok.edf\nnot-a-checksum  bad.edf\n")
    with pytest.raises(DatasetError, match="SHA256SUMS, line 2"):
        download.read_sha256sums(sums)
