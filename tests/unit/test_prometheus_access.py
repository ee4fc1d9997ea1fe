"""PrometheusAccess: basic auth and TLS against a real HTTPS stand-in on 127.0.0.1 (tests/unit/
tls_prometheus.py), and the refusals that keep a password off plain http."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.tls_prometheus import PASSWORD, USER, Pki, make_pki, serve
from tooling.console import ToolingError
from tooling.prometheus_api import PrometheusAccess, PrometheusAccessError, PrometheusClient


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_url(pki: Pki) -> Iterator[str]:
    with serve(pki) as url:
        yield url


def password_file(tmp_path: Path, text: str = PASSWORD) -> Path:
    path = tmp_path / "prometheus-password"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def test_right_ca_and_password_answer_queries(https_url: str, pki: Pki, tmp_path: Path) -> None:
    access = PrometheusAccess(USER, password_file(tmp_path), ca_file=pki.ca)
    client = PrometheusClient(https_url, access=access)
    assert client.query_range("up", 1000, 1010, 10) == [[(1000.0, 2.0), (1010.0, 2.0)]]
    assert client.scrape_interval() == 5.0
    # Neither the settings nor the client show the password.
    assert PASSWORD not in repr(access) and PASSWORD not in repr(client)


def test_wrong_password_is_refused_naming_the_user(https_url: str, pki: Pki, tmp_path: Path) -> None:
    access = PrometheusAccess(USER, password_file(tmp_path, "guess"), ca_file=pki.ca)
    with pytest.raises(PrometheusAccessError) as info:
        PrometheusClient(https_url, access=access).scrape_interval()
    message = str(info.value)
    assert "HTTP 401" in message and f"user {USER!r}" in message and "were refused" in message
    assert "guess" not in message and info.value.exit_code == 2


def test_missing_credentials_are_asked_for(https_url: str, pki: Pki) -> None:
    with pytest.raises(PrometheusAccessError, match="wants credentials; give --prometheus-user"):
        PrometheusClient(https_url, access=PrometheusAccess(ca_file=pki.ca)).scrape_interval()


def test_certificate_without_the_ca_is_not_trusted(https_url: str, tmp_path: Path) -> None:
    access = PrometheusAccess(USER, password_file(tmp_path))
    with pytest.raises(PrometheusAccessError) as info:
        PrometheusClient(https_url, access=access).scrape_interval()
    assert "TLS certificate is not trusted by the system's CAs" in str(info.value)
    assert info.value.hint is not None and "--prometheus-ca" in info.value.hint


def test_another_ca_is_not_trusted_either(https_url: str, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other")
    access = PrometheusAccess(USER, password_file(tmp_path), ca_file=other.ca)
    with pytest.raises(PrometheusAccessError, match=f"not trusted by the CA in {other.ca}"):
        PrometheusClient(https_url, access=access).scrape_interval()


def test_client_certificate_when_the_server_asks_for_one(pki: Pki, tmp_path: Path) -> None:
    with serve(pki, client_cert_required=True) as url:
        with_cert = PrometheusAccess(
            USER, password_file(tmp_path), pki.ca, client_cert=pki.client_cert, client_key=pki.client_key
        )
        assert PrometheusClient(url, access=with_cert).scrape_interval() == 5.0
        without = PrometheusAccess(USER, password_file(tmp_path), pki.ca)
        with pytest.raises(PrometheusAccessError) as info:
            PrometheusClient(url, access=without).scrape_interval()
        assert "TLS failed" in str(info.value)


def test_basic_auth_over_plain_http_only_when_allowed(tmp_path: Path) -> None:
    with serve(None) as url:
        refused = PrometheusAccess(USER, password_file(tmp_path))
        with pytest.raises(
            ToolingError, match="refusing to send the password of user 'gatekeeper' over plain http"
        ):
            PrometheusClient(url, access=refused)
        allowed = PrometheusAccess(USER, password_file(tmp_path), allow_insecure_http=True)
        assert PrometheusClient(url, access=allowed).scrape_interval() == 5.0


@pytest.mark.parametrize(
    ("access", "url", "message"),
    [
        (PrometheusAccess(ca_file=Path("/ca.pem")), "http://prom:9090", "need an https:// URL"),
        (PrometheusAccess(), "prom:9090", "expected http://HOST:PORT or https://HOST:PORT"),
    ],
)
def test_settings_that_cannot_work_are_usage_errors(access: PrometheusAccess, url: str, message: str) -> None:
    with pytest.raises(ToolingError, match=message) as info:
        PrometheusClient(url, access=access)
    assert info.value.exit_code == 2


def test_options_that_go_together(tmp_path: Path) -> None:
    with pytest.raises(ToolingError, match="go together"):
        PrometheusAccess(user=USER)
    with pytest.raises(ToolingError, match="go together"):
        PrometheusAccess(password_file=password_file(tmp_path))
    with pytest.raises(ToolingError, match="needs --prometheus-client-cert"):
        PrometheusAccess(client_key=tmp_path / "key.pem")


def test_unreadable_or_empty_password_file_is_named(https_url: str, pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(PrometheusAccessError, match="the file is empty"):
        PrometheusClient(https_url, access=PrometheusAccess(USER, password_file(tmp_path, ""), pki.ca))
    missing = tmp_path / "nope"
    with pytest.raises(PrometheusAccessError, match=f"--prometheus-password-file {missing}: cannot be read"):
        PrometheusClient(https_url, access=PrometheusAccess(USER, missing, pki.ca))
