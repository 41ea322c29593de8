import functools
import hashlib
import http.server
import io
import socket
import tarfile
import threading
import zipfile

import pytest
from click.testing import CliRunner

from wmprobe.cli import main
from wmprobe.errors import DatasetDownloadError, UnsafeArchiveError
from wmprobe.study.downloads import fetch, safe_extract


@pytest.fixture()
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _tar(path, members):
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_verified_download_and_extract(server, tmp_path):
    root, url = server
    sha = _tar(root / "good.tar", {"set/a/x.txt": b"hello", "set/b/y.txt": b"world"})
    dest = tmp_path / "dl"
    archive = fetch(f"{url}/good.tar", dest / "good.tar", sha256=sha)
    safe_extract(archive, dest)
    assert (dest / "set" / "a" / "x.txt").read_bytes() == b"hello"
    # A second call reuses the verified file (the server is not needed).
    (root / "good.tar").unlink()
    assert fetch(f"{url}/good.tar", dest / "good.tar", sha256=sha) == archive


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    root, url = server
    _tar(root / "good.tar", {"x.txt": b"hello"})
    dest = tmp_path / "dl"
    with pytest.raises(DatasetDownloadError, match="not the expected"):
        fetch(f"{url}/good.tar", dest / "good.tar", sha256="0" * 64)
    assert not list(dest.iterdir())


def test_download_without_checksum_is_refused(server, tmp_path):
    root, url = server
    with pytest.raises(DatasetDownloadError, match="without a checksum"):
        fetch(f"{url}/x.tar", tmp_path / "x.tar", sha256=None)


def test_refused_connection_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(DatasetDownloadError, match="Could not download"):
        fetch(f"http://127.0.0.1:{port}/x.tar", tmp_path / "x.tar", sha256="0" * 64, timeout=5)


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil-wmprobe.txt", "a/../../evil.txt"])
def test_tar_traversal_is_refused(tmp_path, name):
    archive = tmp_path / "bad.tar"
    _tar(archive, {"ok.txt": b"fine", name: b"evil"})
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="outside"):
        safe_extract(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and not list(dest.iterdir())


def test_tar_symlink_is_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("escape")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="link"):
        safe_extract(archive, tmp_path / "out")


def test_zip_traversal_is_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.txt", b"evil")
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_download_command_from_a_local_mirror(server, tmp_path):
    root, url = server
    sha = _tar(root / "c.tar", {"256_ObjectCategories/001.ak47/001_0001.jpg": b"jpg"})
    dest = tmp_path / "data"
    result = CliRunner().invoke(
        main,
        ["download", "caltech256", "--dest", str(dest), "--url", f"{url}/c.tar", "--sha256", sha],
    )
    assert result.exit_code == 0, result.output
    assert (dest / "256_ObjectCategories" / "001.ak47" / "001_0001.jpg").is_file()
    bad = CliRunner().invoke(
        main,
        [
            "download",
            "caltech256",
            "--dest",
            str(dest),
            "--url",
            f"{url}/c.tar",
            "--sha256",
            "1" * 64,
        ],
    )
    assert bad.exit_code == 1 and "not the expected" in bad.output
    assert "Traceback" not in bad.output
