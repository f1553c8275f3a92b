"""The CRL refresh job (the pki role's timer script, rendered by Ansible, run with the real curl and
openssl against a local HTTP server): it installs a newer CRL and refuses one that is older than
the installed one (a replay would un-revoke certificates), expired, cut short or from another CA,
keeping the installed CRL each time."""

from __future__ import annotations

import contextlib
import functools
import http.server
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.pki import DevCA
from tests.deploy import harness

TEMPLATE = harness.ANSIBLE_DIR / "roles" / "pki" / "templates" / "docclass-crl-refresh.sh.j2"


@dataclass
class Refresh:
    script: Path
    served: Path
    installed: Path

    def run(self, crl: bytes) -> subprocess.CompletedProcess[str]:
        self.served.write_bytes(crl)
        return subprocess.run([str(self.script)], capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def http_serving(directory: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    with harness.serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield url


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DevCA:
    return DevCA.init(tmp_path_factory.mktemp("ca"), common_name="Hospital CA")


@pytest.fixture
def refresh(ca: DevCA, tmp_path: Path) -> Iterator[Refresh]:
    pki_dir, www = tmp_path / "pki", tmp_path / "www"
    pki_dir.mkdir()
    www.mkdir()
    (pki_dir / "ca.pem").write_bytes(ca.cert_path.read_bytes())
    script = tmp_path / "docclass-crl-refresh"
    with http_serving(www) as base:
        variables = f"pki_crl_url={base}/crl pki_dir={pki_dir}"
        rendered = subprocess.run(
            [harness.tool("ansible"), "localhost", "-c", "local", "-m", "ansible.builtin.template",
             "-a", f"src={TEMPLATE} dest={script} mode=0755", "-e", variables],
            env=harness.ansible_env(tmp_path), capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert rendered.returncode == 0, rendered.stdout + rendered.stderr
        yield Refresh(script, www / "crl", pki_dir / "crl.pem")


def crl(ca: DevCA, out: Path, *, expired: bool = False) -> bytes:
    """A newly signed CRL: each has a higher CRL number than the one before."""
    return ca.write_crl(out=out, expired=expired).read_bytes()


def test_a_newer_crl_is_installed_in_pem_or_der(
    ca: DevCA, refresh: Refresh, tmp_path: Path
) -> None:
    first, second = crl(ca, tmp_path / "1.pem"), crl(ca, tmp_path / "2.pem")
    assert refresh.run(first).returncode == 0
    assert refresh.installed.read_bytes() == first
    again = refresh.run(first)  # the hourly fetch of an unchanged CRL
    assert again.returncode == 0, again.stderr
    der = subprocess.run(["openssl", "crl", "-in", str(tmp_path / "2.pem"), "-outform", "DER"],
                         capture_output=True, check=True).stdout  # fmt: skip
    assert refresh.run(der).returncode == 0
    assert refresh.installed.read_bytes() == second


@pytest.mark.parametrize(
    ("offer", "why"),
    [
        ("older", "older than the installed"),
        ("expired", "past its nextUpdate"),
        ("truncated", "not a CRL"),
        ("foreign", "not signed by the CA bundle"),
    ],
)
def test_a_crl_that_would_weaken_revocation_is_refused(
    ca: DevCA, refresh: Refresh, tmp_path: Path, offer: str, why: str
) -> None:
    older = crl(ca, tmp_path / "older.pem")
    current = crl(ca, tmp_path / "current.pem")
    assert refresh.run(current).returncode == 0
    offered = {
        "older": older,
        "expired": crl(ca, tmp_path / "expired.pem", expired=True),
        "truncated": crl(ca, tmp_path / "cut.pem")[:-40],
        "foreign": crl(DevCA.init(tmp_path / "other", common_name="Hospital CA"), tmp_path / "f"),
    }[offer]
    refused = refresh.run(offered)
    assert refused.returncode != 0
    assert why in refused.stderr
    assert refresh.installed.read_bytes() == current
    assert sorted(p.name for p in refresh.installed.parent.iterdir()) == ["ca.pem", "crl.pem"]
