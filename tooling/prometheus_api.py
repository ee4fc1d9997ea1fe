"""Prometheus's HTTP API (plain urllib, no client library): range queries and the scrape interval.

The gates measure runs with it and the daily checks ask their questions over it; every failure is a
PrometheusError naming the URL and the reason. How to get in (basic auth, TLS) is one PrometheusAccess,
made once from the command line and handed to every client.
"""

from __future__ import annotations

import json
import math
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tooling.console import ToolingError

Series = list[tuple[float, float]]
DEFAULT_SCRAPE_INTERVAL_S = 15.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class PrometheusError(Exception):
    """Prometheus could not answer: the message names the URL and the reason."""


class PrometheusAccessError(PrometheusError, ToolingError):
    """Prometheus turned us away (credentials refused, certificate not trusted) or a credential file could
    not be read: the operator's to fix, so a usage error rather than a gap in the evidence."""


@dataclass(frozen=True)
class PrometheusAccess:
    """How to get past Prometheus' front door (its web config, or a proxy before it): basic auth and TLS.

    The password stays in its file until a client is made; nothing here prints or records it. Basic auth
    over plain http is refused unless `allow_insecure_http` says the network is trusted.
    """

    user: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    allow_insecure_http: bool = False

    def __post_init__(self) -> None:
        if (self.user is None) != (self.password_file is None):
            raise ToolingError(
                "--prometheus-user and --prometheus-password-file go together (basic auth needs both)"
            )
        if self.client_key is not None and self.client_cert is None:
            raise ToolingError("--prometheus-client-key needs --prometheus-client-cert")

    def check_url(self, url: str) -> None:
        """ToolingError when `url` cannot be used with these settings."""
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ToolingError(f"Prometheus URL {url!r}: expected http://HOST:PORT or https://HOST:PORT")
        if scheme == "https":
            return
        if self.ca_file is not None or self.client_cert is not None:
            raise ToolingError(
                f"Prometheus URL {url}: --prometheus-ca and --prometheus-client-cert need an https:// URL"
            )
        if self.user is not None and not self.allow_insecure_http:
            raise ToolingError(
                f"Prometheus URL {url}: refusing to send the password of user {self.user!r} over plain http",
                hint="use the https:// URL, or pass --allow-insecure-http on a network you trust",
            )

    @staticmethod
    def _password(file: Path) -> str:
        # Without the trailing newline `echo secret > file` leaves.
        try:
            password = file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise PrometheusAccessError(
                f"--prometheus-password-file {file}: cannot be read ({exc})"
            ) from None
        if not password:
            raise PrometheusAccessError(f"--prometheus-password-file {file}: the file is empty")
        return password

    def _ssl_context(self) -> ssl.SSLContext:
        # Only the given CA is trusted when there is one; the system's otherwise.
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise PrometheusAccessError(
                f"--prometheus-ca {self.ca_file}: not a usable CA file ({exc})"
            ) from None
        if self.client_cert is not None:
            try:
                context.load_cert_chain(self.client_cert, self.client_key)
            except (OSError, ssl.SSLError) as exc:
                raise PrometheusAccessError(
                    f"--prometheus-client-cert {self.client_cert}: not a usable certificate and key ({exc})"
                ) from None
        return context

    def opener(self, url: str) -> urllib.request.OpenerDirector:
        """A urllib opener for `url` that sends the basic-auth header up front and checks TLS as set."""
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.HTTPSHandler(context=self._ssl_context())
        ]
        if self.user is not None and self.password_file is not None:
            passwords = urllib.request.HTTPPasswordMgrWithPriorAuth()
            password = self._password(self.password_file)
            passwords.add_password(None, url, self.user, password, is_authenticated=True)
            handlers.append(urllib.request.HTTPBasicAuthHandler(passwords))
        return urllib.request.build_opener(*handlers)

    def refusal(self, code: int) -> str:
        """What an HTTP 401/403 means for these settings."""
        if self.user is None:
            return "Prometheus wants credentials; give --prometheus-user and --prometheus-password-file"
        if code == 403:
            return f"user {self.user!r} is not allowed in"
        return f"user {self.user!r} and the password in {self.password_file} were refused"


def parse_duration(text: str) -> float | None:
    parts = _DURATION.findall(text or "")
    return sum(float(n) * _SECONDS[u] for n, u in parts) if parts else None


@dataclass
class PrometheusClient:
    url: str
    timeout_s: float = 10.0
    access: PrometheusAccess = field(default_factory=PrometheusAccess)
    _opener: urllib.request.OpenerDirector = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.access.check_url(self.url)
        self._opener = self.access.opener(self.url)

    def _get(self, path: str, params: dict[str, str] | None = None) -> object:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        address = f"{self.url.rstrip('/')}{path}{query}"
        try:
            with self._opener.open(address, timeout=self.timeout_s) as response:
                body = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                refusal = self.access.refusal(exc.code)
                raise PrometheusAccessError(f"{self.url}: HTTP {exc.code} for {path}: {refusal}") from None
            detail = _error_text(exc)
            raise PrometheusError(f"{self.url}: HTTP {exc.code} for {path}: {detail}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLError):
                raise self._tls_error(exc.reason) from None
            raise PrometheusError(f"{self.url}: cannot be reached ({exc.reason})") from None
        except ssl.SSLError as exc:  # a TLS alert that arrives with the answer (e.g. certificate required)
            raise self._tls_error(exc) from None
        except (TimeoutError, OSError) as exc:
            raise PrometheusError(f"{self.url}: cannot be reached ({exc})") from None
        except ValueError:
            raise PrometheusError(
                f"{self.url}: {path} did not answer with JSON (is this Prometheus?)"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else body
            raise PrometheusError(f"{self.url}: {path} failed: {error}")
        return body.get("data")

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get(
            "/api/v1/query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        result = data.get("result", []) if isinstance(data, dict) else []
        return [
            [(float(t), float(v)) for t, v in item.get("values", []) if math.isfinite(float(v))]
            for item in result
        ]

    def scrape_interval(self) -> float:
        """The longest scrape interval among the active targets (older servers: the default 15 s)."""
        data = self._get("/api/v1/targets", {"state": "active"})
        targets = data.get("activeTargets", []) if isinstance(data, dict) else []
        intervals = [parse_duration(str(t.get("scrapeInterval", ""))) for t in targets]
        known = [i for i in intervals if i]
        return max(known) if known else DEFAULT_SCRAPE_INTERVAL_S

    def scrape_errors(self) -> dict[str, str]:
        """instance -> why its last scrape failed, for every active target Prometheus holds down."""
        data = self._get("/api/v1/targets", {"state": "active"})
        targets = data.get("activeTargets", []) if isinstance(data, dict) else []
        return {
            str(t.get("labels", {}).get("instance", "")): str(t.get("lastError") or "down")
            for t in targets
            if isinstance(t, dict) and t.get("health") == "down"
        }

    def _tls_error(self, exc: ssl.SSLError) -> PrometheusAccessError:
        if isinstance(exc, ssl.SSLCertVerificationError):
            trusted = f"the CA in {self.access.ca_file}" if self.access.ca_file else "the system's CAs"
            return PrometheusAccessError(
                f"{self.url}: its TLS certificate is not trusted by {trusted} ({exc.verify_message})",
                hint="give the CA that signed Prometheus' certificate with --prometheus-ca FILE",
            )
        return PrometheusAccessError(
            f"{self.url}: TLS failed ({exc.reason or exc})",
            hint="a server that asks for a client certificate needs --prometheus-client-cert (and -key)",
        )


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read().decode("utf-8"))
        return str(body.get("error") or exc.reason)
    except (ValueError, OSError, AttributeError):
        return str(exc.reason)
