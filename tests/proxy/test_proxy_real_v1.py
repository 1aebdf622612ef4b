"""The real Debian ``cloud_sql_proxy`` (v1), no Google Cloud in reach: fail fast, clearly, leave nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import free_port
from tether.proxy import ProxyStartFailed, detect_major, find_proxy_binary, start_proxy

from .conftest import proxy_processes, state_files_exist

INSTANCE = "my-project:europe-west1:app-postgres-prod"
REAL_V1 = shutil.which("cloud_sql_proxy") or "/usr/bin/cloud_sql_proxy"


@pytest.fixture
def no_google_credentials(isolated_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real binary, a HOME with nothing in it, and no gcloud on PATH to fall back on."""
    home = tmp_path / "home"
    home.mkdir()
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("TETHER_PROXY_BINARY", REAL_V1)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", str(empty_bin))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / "gcloud"))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return home


def test_the_installed_binary_is_recognised_as_v1(no_google_credentials):
    assert detect_major(REAL_V1) == 1
    assert find_proxy_binary().major == 1


def test_no_credentials_fails_fast_and_leaves_no_process(no_google_credentials):
    port = free_port()
    with pytest.raises(ProxyStartFailed) as info:
        start_proxy(INSTANCE, port, timeout=10)
    message = info.value.message
    assert info.value.reason == "no-credentials"
    assert "cloud_sql_proxy v1" in message
    assert "google: could not find default credentials" in message  # the proxy's own words
    assert "gcloud auth application-default login" in message
    assert proxy_processes(f"tcp:127.0.0.1:{port}") == []
    assert not state_files_exist()


def test_an_unusable_key_file_is_reported_as_bad_credentials(no_google_credentials):
    key = no_google_credentials / "sa.json"
    key.write_text(json.dumps({
        "type": "service_account", "project_id": "my-project", "private_key_id": "0",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        "client_email": "proxy@my-project.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))
    port = free_port()
    with pytest.raises(ProxyStartFailed) as info:
        start_proxy(INSTANCE, port, credentials_file=str(key), timeout=10)
    assert info.value.reason == "bad-credentials"
    assert "private key should be a PEM" in info.value.message
    assert proxy_processes(f"tcp:127.0.0.1:{port}") == []


def test_iam_login_on_the_old_debian_binary_says_to_install_v2(no_google_credentials):
    port = free_port()
    with pytest.raises(ProxyStartFailed) as info:
        start_proxy(INSTANCE, port, iam=True, timeout=10)
    assert info.value.reason == "unsupported-flag"
    assert "flag provided but not defined: -enable_iam_login" in info.value.message  # not the usage page after it
    assert "install the v2 proxy" in info.value.message
    assert proxy_processes(f"tcp:127.0.0.1:{port}") == []


def test_with_gcloud_installed_but_logged_out(no_google_credentials, monkeypatch):
    # v1 asks gcloud first: the realistic laptop that has the SDK but no login.
    gcloud = shutil.which("gcloud", path="/usr/bin:/usr/local/bin")
    assert gcloud, "the Google Cloud SDK is installed on this machine"
    monkeypatch.setenv("PATH", str(Path(gcloud).parent) + ":/bin")
    port = free_port()
    with pytest.raises(ProxyStartFailed) as info:
        # v1 runs gcloud before it gives up, slow on a loaded machine; a failing start returns as soon as it exits.
        start_proxy(INSTANCE, port, timeout=60)
    assert info.value.reason == "no-credentials"
    assert "gcloud auth application-default login" in info.value.message
    assert proxy_processes(f"tcp:127.0.0.1:{port}") == []
