"""HS* secrets travel sealed: the compiler seals, the proxy opens, nobody else reads them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from propylon_compiler import compiler, manifests, sealing
from propylon_config import codec
from propylon_proxy.authorizers import sealing as opening

TESTDATA = Path(__file__).parent / "testdata"
SECRET_VALUE = "a-shared-hs256-secret-of-32-bytes!"  # base/shop.yaml's jwt-secret
INSTALL = b"0123456789abcdef0123456789abcdef"


def _documents() -> list[manifests.Document]:
    docs: list[manifests.Document] = []
    for path, name in ((TESTDATA / "authorizers-jwt.in.yaml", "in.yaml"), (TESTDATA / "base/shop.yaml", "base.yaml")):
        found, problems = manifests.parse_text(path.read_text(), name)
        assert not problems
        docs.extend(found)
    return docs


def _shared(result: compiler.CompileResult) -> str:
    (authorizer,) = [a for a in result.snapshot.authorizers if a.id == "shop/shared"]
    assert authorizer.jwt is not None
    return authorizer.jwt.sealed_secret


def test_the_proxy_opens_what_the_compiler_sealed_and_only_for_its_owner() -> None:
    result = compiler.compile(_documents(), options=compiler.CompileOptions(sealing_secret=INSTALL))
    sealed = _shared(result)
    assert sealed.startswith("aes-siv:")
    text = codec.dumps(result.snapshot)
    assert SECRET_VALUE not in text
    assert opening.open_sealed(INSTALL, sealed, "shop/shared") == SECRET_VALUE.encode()
    with pytest.raises(opening.Unopenable):
        opening.open_sealed(INSTALL, sealed, "shop/other")  # moved to another Authorizer
    with pytest.raises(opening.Unopenable):
        opening.open_sealed(b"another-install-secret-of-32-byt", sealed, "shop/shared")
    with pytest.raises(opening.Unopenable):
        opening.open_sealed(INSTALL, sealed[:-4] + "AAAA", "shop/shared")  # altered
    with pytest.raises(opening.Unopenable):
        opening.open_sealed(None, sealed, "shop/shared")


def test_sealing_is_deterministic_so_the_snapshot_version_is_stable() -> None:
    options = compiler.CompileOptions(sealing_secret=INSTALL)
    first, second = compiler.compile(_documents(), options=options), compiler.compile(_documents(), options=options)
    assert first.snapshot.version == second.snapshot.version
    assert _shared(first) == _shared(second) == sealing.seal(INSTALL, SECRET_VALUE.encode(), "shop/shared")


def test_both_halves_agree_on_the_format() -> None:
    assert sealing.PREFIX == opening.PREFIX
    assert sealing._INFO == opening._INFO
    assert sealing.MIN_SECRET_BYTES == opening.MIN_SECRET_BYTES


def test_render_output_never_holds_the_secret(tmp_path: Path) -> None:
    for path in (TESTDATA / "authorizers-jwt.in.yaml", TESTDATA / "base/shop.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    done = subprocess.run(
        [sys.executable, "-m", "propylon", "render", "-f", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert SECRET_VALUE not in done.stdout + done.stderr
    snapshot = json.loads(done.stdout)
    shared = next(a for a in snapshot["authorizers"] if a["id"] == "shop/shared")
    assert shared["jwt"]["sealed_secret"] == ""
    assert shared["jwt"]["secret_ref"] == {"namespace": "shop", "name": "jwt-secret", "key": "secret"}
