"""config.json "encryption": the keyring path and the SSE-C over http switch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.errors import ConfigFileError


def settings(tmp_path: Path, encryption: object, **env: str):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"encryption": encryption} if encryption is not None else {}))
    return load_settings({"S3_CONFIG_FILE": str(config), "S3METADATAPATH": str(tmp_path / "m"),
                          **env})


def test_defaults_and_overrides(tmp_path: Path) -> None:
    default = settings(tmp_path, None).encryption
    assert default.keyring_path == tmp_path / "localKeys" / "sse-keyring.json"
    assert default.allow_sse_c_over_http is False
    chosen = settings(tmp_path, {"keyringFile": "/k/ring.json", "allowSseCOverHttp": True})
    assert chosen.encryption.keyring_path == Path("/k/ring.json")
    assert chosen.encryption.allow_sse_c_over_http is True
    by_env = settings(tmp_path, {"keyringFile": "/k/ring.json"}, S3_SSE_KEYRING_FILE="/e.json")
    assert by_env.encryption.keyring_path == Path("/e.json")


@pytest.mark.parametrize("encryption,where", [
    ({"keyring": "x"}, 'key "encryption.keyring"'),
    ({"keyringFile": 3}, 'key "encryption.keyringFile"'),
    ({"allowSseCOverHttp": "yes"}, 'key "encryption.allowSseCOverHttp"'),
])
def test_bad_config_names_the_key(tmp_path: Path, encryption: dict, where: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        settings(tmp_path, encryption)
    assert where in str(caught.value) and "config.json" in str(caught.value)
