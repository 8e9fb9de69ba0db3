"""mfa_verify installs and works in a virtual environment that has only its own dependencies.

Slow (about 40 s on 2 cores: a new venv and two pip installs from the package index, pip's cache
helps); deselect with `-m "not isolated_install"`. Without the index it is skipped, unless
MFA_TEST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import fallback

VERIFIER = Path(__file__).resolve().parents[2] / "verifier"
SERVER_PACKAGES = ["mfa_service", "sqlalchemy", "sqlmodel", "redis", "passlib", "alembic"]

# Run inside the new venv: import, check what got loaded, verify a real token end to end
# against a JWKS served by an httpx transport.
CORE_CHECK = """
import asyncio, importlib.util, sys, time
import mfa_verify
from mfa_verify import InvalidToken, Verifier

server = %(server)r
assert not {m.split(".")[0] for m in sys.modules} & set(server + ["fastapi"]), sorted(sys.modules)
for name in server:
    assert importlib.util.find_spec(name) is None, name + " is installed"
try:
    import mfa_service
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("mfa_service imported")

import httpx, jwt
from cryptography.hazmat.primitives.asymmetric import ec

key = ec.generate_private_key(ec.SECP256R1())
jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
jwk.update(kid="k", alg="ES256")
now = int(time.time())
claims = {"iss": "http://mfa.test", "aud": "svc", "sub": "u", "iat": now, "nbf": now,
          "exp": now + 60, "jti": "j", "auth_time": now, "amr": ["pwd", "mfa", "otp"], "sid": "s"}
token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k", "typ": "at+jwt"})

async def main():
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"keys": [jwk]}))
    async with httpx.AsyncClient(transport=transport) as http:
        verifier = Verifier("http://mfa.test", "svc", http=http)
        verified = await verifier.verify_mfa(token, max_age=300, methods={"otp"})
        assert verified.sub == "u" and verified.amr == {"pwd", "mfa", "otp"}
        try:
            await verifier.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
        except InvalidToken:
            pass
        else:
            raise SystemExit("tampered token accepted")

asyncio.run(main())
print("core ok")
"""

FASTAPI_CHECK = """
import sys
import mfa_verify.fastapi
assert not {m.split(".")[0] for m in sys.modules} & set(%(server)r), sorted(sys.modules)
print("fastapi ok")
"""

NETWORK_TROUBLE = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "No matching distribution found",
    "Could not find a version",
    "ConnectTimeout",
    "Network is unreachable",
)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def pip_install(python: Path, requirement: str, cwd: Path) -> None:
    r = run([str(python), "-m", "pip", "install", "-q", requirement], cwd)
    if r.returncode != 0:
        output = r.stdout + r.stderr
        if any(sign in output for sign in NETWORK_TROUBLE):
            fallback(f"the package index is unreachable: {requirement} not installed")
            pytest.skip("the package index is unreachable")
        pytest.fail(f"pip install {requirement} failed:\n{output[-3000:]}")


@pytest.mark.isolated_install
def test_the_library_needs_none_of_the_server(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    r = run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    assert r.returncode == 0, r.stderr
    python = venv / "bin" / "python"

    pip_install(python, str(VERIFIER), tmp_path)
    core = run([str(python), "-c", CORE_CHECK % {"server": SERVER_PACKAGES}], tmp_path)
    assert core.returncode == 0, core.stdout + core.stderr
    assert core.stdout.strip() == "core ok"
    without_extra = run([str(python), "-c", "import mfa_verify.fastapi"], tmp_path)
    assert without_extra.returncode != 0
    assert "No module named 'fastapi'" in without_extra.stderr

    pip_install(python, f"{VERIFIER}[fastapi]", tmp_path)
    extra = run([str(python), "-c", FASTAPI_CHECK % {"server": SERVER_PACKAGES}], tmp_path)
    assert extra.returncode == 0, extra.stdout + extra.stderr
    assert extra.stdout.strip() == "fastapi ok"
