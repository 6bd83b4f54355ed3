"""A real Kubernetes control plane for tests: etcd + kube-apiserver on 127.0.0.1, nothing else.

There is no kubelet, scheduler or controller-manager, so nothing runs Pods and no controller
writes EndpointSlices: a test creates the Services and EndpointSlices it needs itself, exactly
as the objects would look in a cluster. The API server is real, so schema validation, CEL rules,
defaulting, RBAC, admission webhooks, resourceVersions and watches behave as in production.

The binaries come from ``tools/controlplane/build.sh``; ``binaries_missing()`` says which are
absent so the tier can skip with a reason instead of failing on a laptop without Go.

Certificates are made with the ``cryptography`` package (a dependency of pyjwt[crypto]): one CA
that signs the API server's serving cert and the admin's client cert (CN=propylon-admin,
O=system:masters, so RBAC lets it do anything), and an RSA key for service-account tokens.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pathlib
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.ports import free_port

K8S_VERSION = "v1.34.2"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
START_TIMEOUT = 60.0  # seconds for etcd and the API server to become ready
ESTABLISH_TIMEOUT = 60.0


def binaries_dir() -> pathlib.Path:
    """Where build.sh puts the binaries (overridable with PROPYLON_K8S_BIN)."""
    default = pathlib.Path.home() / ".cache" / "propylon" / f"k8s-{K8S_VERSION}" / "bin"
    return pathlib.Path(os.environ.get("PROPYLON_K8S_BIN", default))


def binaries_missing() -> list[str]:
    return [name for name in ("etcd", "kube-apiserver", "kubectl") if not (binaries_dir() / name).is_file()]


# ---------------------------------------------------------------- certificates


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: pathlib.Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _write_cert(path: pathlib.Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _issue(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    ca_name: x509.Name,
    ca_key: rsa.RSAPrivateKey,
    *,
    usage: Sequence[x509.ObjectIdentifier] = (),
    sans: Sequence[x509.GeneralName] = (),
    is_ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def make_certificates(directory: pathlib.Path) -> None:
    """Write ca.crt, apiserver.{crt,key}, admin.{crt,key} and sa.key into ``directory``."""
    ca_key = _key()
    ca_name = _name("propylon-test-ca")
    _write_cert(directory / "ca.crt", _issue(ca_name, ca_key, ca_name, ca_key, is_ca=True))
    _write_key(directory / "ca.key", ca_key)

    server_key = _key()
    # Go checks only SANs, never the CN, so 127.0.0.1 must be an IP SAN.
    server = _issue(
        _name("localhost"),
        server_key,
        ca_name,
        ca_key,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    _write_cert(directory / "apiserver.crt", server)
    _write_key(directory / "apiserver.key", server_key)

    admin_key = _key()
    admin = _issue(
        _name("propylon-admin", "system:masters"),
        admin_key,
        ca_name,
        ca_key,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    _write_cert(directory / "admin.crt", admin)
    _write_key(directory / "admin.key", admin_key)

    _write_key(directory / "sa.key", _key())


def make_client_certificate(directory: pathlib.Path, user: str, groups: Sequence[str] = ()) -> tuple[str, str]:
    """A client cert for ``user`` (CN) in ``groups`` (O), signed by the cluster CA: (cert path, key path)."""
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    ca_name = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes()).subject
    key = _key()
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
    subject = x509.Name([*parts, x509.NameAttribute(NameOID.COMMON_NAME, user)])
    cert = _issue(subject, key, ca_name, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    cert_path, key_path = directory / f"user-{user}.crt", directory / f"user-{user}.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return str(cert_path), str(key_path)


# ---------------------------------------------------------------- processes


def _spawn(argv: list[str], log_path: pathlib.Path) -> subprocess.Popen[bytes]:
    """Start a process in its own process group so teardown can kill it and anything it forked."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps the descriptor
    try:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    finally:
        log.close()


def _kill(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def _tail(path: pathlib.Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ControlPlane:
    """etcd + kube-apiserver in a temporary directory; ``start()`` / ``stop()``.

    ``stop_apiserver()`` / ``start_apiserver()`` let a test take the API server away (and bring it
    back on the same port, with the same etcd data) to check what clients do meanwhile.
    """

    def __init__(self, workdir: pathlib.Path | None = None) -> None:
        self.dir = workdir or pathlib.Path(tempfile.mkdtemp(prefix="propylon-cp-"))
        self.bin = binaries_dir()
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.port = free_port()
        self.etcd: subprocess.Popen[bytes] | None = None
        self.apiserver: subprocess.Popen[bytes] | None = None

    # -- paths and clients

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.dir / "kubeconfig"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the tier's kubectl against this cluster; raises with stderr when ``check`` and it fails."""
        result = subprocess.run(
            [str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def apply(self, yaml_text: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` of the given YAML (server-side validation and admission included)."""
        return self.kubectl("apply", "-f", "-", input=yaml_text, check=check)

    def api_client(self):  # -> kubernetes.client.ApiClient; imported lazily to keep module import cheap
        """A fresh kubernetes python client configured from this cluster's kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    # -- lifecycle

    def start(self) -> None:
        make_certificates(self.dir)
        self._write_kubeconfig()
        self._start_etcd()
        self.start_apiserver()

    def stop(self) -> None:
        _kill(self.apiserver)
        _kill(self.etcd)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self.etcd = _spawn(
            [
                str(self.bin / "etcd"),
                "--name=propylon-test",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=propylon-test={peer}",
                "--unsafe-no-fsync=true",  # throwaway data: fsync only costs time
                "--log-level=warn",
            ],
            self.dir / "etcd.log",
        )
        self._wait(lambda: self._http_ok(f"{client}/health", None), self.etcd, "etcd", self.dir / "etcd.log")

    def start_apiserver(self) -> None:
        d = self.dir
        self.apiserver = _spawn(
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--cert-dir={d}",
                f"--tls-cert-file={d / 'apiserver.crt'}",
                f"--tls-private-key-file={d / 'apiserver.key'}",
                f"--client-ca-file={d / 'ca.crt'}",
                f"--secure-port={self.port}",
                "--bind-address=127.0.0.1",
                # Without it the server advertises the host's default-route address in the
                # `kubernetes` Service; with no default route at all it refuses to start.
                "--advertise-address=127.0.0.1",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer=https://127.0.0.1:{self.port}/",
                f"--service-account-key-file={d / 'sa.key'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                # No controller-manager creates ServiceAccounts; every other admission plugin,
                # ValidatingAdmissionWebhook and ValidatingAdmissionPolicy included, stays on.
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--v=1",
            ],
            d / "apiserver.log",
        )
        self._wait(self._apiserver_ready, self.apiserver, "kube-apiserver", d / "apiserver.log")

    def stop_apiserver(self) -> None:
        """Kill the API server (SIGKILL: no graceful goodbye to watchers, as in a crash)."""
        _kill(self.apiserver, signal.SIGKILL)
        self.apiserver = None

    def _apiserver_ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))
        context.load_cert_chain(str(self.dir / "admin.crt"), str(self.dir / "admin.key"))
        return self._http_ok(f"{self.server}/readyz", context)

    @staticmethod
    def _http_ok(url: str, context: ssl.SSLContext | None) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    @staticmethod
    def _wait(ready, process: subprocess.Popen[bytes] | None, what: str, log: pathlib.Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {START_TIMEOUT:.0f} s:\n{_tail(log)}")

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> pathlib.Path:
        """A kubeconfig for another identity, which RBAC then restricts: to test least privilege."""
        cert, key = make_client_certificate(self.dir, user, groups)
        path = self.dir / f"kubeconfig-{user}"
        self._write_kubeconfig(path, user, cert, key)
        return path

    def _write_kubeconfig(
        self, path: pathlib.Path | None = None, user: str = "propylon-admin", cert: str = "", key: str = ""
    ) -> None:
        d = self.dir
        cert = cert or str(d / "admin.crt")
        key = key or str(d / "admin.key")
        config = {  # JSON is YAML, and kubectl and the python client both read it
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "propylon-test",
                    "cluster": {"server": self.server, "certificate-authority": str(d / "ca.crt")},
                }
            ],
            "users": [{"name": user, "user": {"client-certificate": cert, "client-key": key}}],
            "contexts": [{"name": "propylon-test", "context": {"cluster": "propylon-test", "user": user}}],
            "current-context": "propylon-test",
        }
        (path or self.kubeconfig).write_text(json.dumps(config, indent=2))

    # -- CRDs

    def install_crds(self, directory: pathlib.Path = CRD_DIR) -> list[str]:
        """Apply every crds/*.yaml and wait until each CRD is Established; returns their names."""
        files = sorted(directory.glob("*.yaml")) if directory.is_dir() else []
        if not files:
            return []
        args: list[str] = []
        for path in files:
            args += ["-f", str(path)]
        applied = self.kubectl("apply", "--server-side", *args, "-o", "name").stdout.split()
        names = [name.split("/", 1)[1] for name in applied if name.startswith("customresourcedefinition")]
        if names:
            self.kubectl(
                "wait",
                "--for=condition=Established",
                f"--timeout={ESTABLISH_TIMEOUT:.0f}s",
                *[f"crd/{name}" for name in names],
                timeout=ESTABLISH_TIMEOUT + 10,
            )
        return names
