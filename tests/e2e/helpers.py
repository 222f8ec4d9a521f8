"""Helpers shared by the end-to-end tests: bounded waits, background polling, the CLI
in-process, and a self-signed certificate for https stand-ins on 127.0.0.1."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from functions.cli import main as cli


def wait_for(check, timeout: float, what: str, every: float = 0.2):
    """check() until truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def polling(stack):
    """Poll runs back to back in the background, as Cloud Scheduler would (faster)."""
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            stack.poll(budget_s=1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=35)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`lrowatch ARGV…` in this process: (exit code, stdout, stderr)."""
    try:
        code = cli(list(argv))
    except SystemExit as exc:  # argparse's own exits: --help, --version, usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def self_signed(directory: Path, name: str = "lrowatch test") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM), made at test time."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name.replace(' ', '-')}.pem", directory / f"{name.replace(' ', '-')}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def serve_https(handler, directory: Path, name: str):
    """Serve `handler` (a BaseHTTPRequestHandler class) over https on 127.0.0.1, in a
    thread, with a fresh self-signed certificate. Returns (server, its https URL, the
    certificate to trust); stop it with server.shutdown()."""
    import ssl
    from http.server import ThreadingHTTPServer

    cert, key = self_signed(directory, name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"https://127.0.0.1:{server.server_port}", cert
