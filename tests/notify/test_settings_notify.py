"""The [notify] section: defaults, problems named by key, the password from env or file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import ConfigInvalid, load_config
from gateway.settings_notify import smtp_notifier

NOTIFY = '[notify]\nsmtp_host = "mail.example.org"\nsender = "gw@example.org"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigInvalid) as caught:
        load_config(write(tmp_path, text))
    return str(caught.value) + " ".join(str(p) for p in caught.value.problems)


def test_defaults_and_absent(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).settings.notify is None
    section = load_config(write(tmp_path, NOTIFY)).settings.notify
    assert section is not None
    assert (section.smtp_port, section.starttls, section.every_s) == (587, True, 300.0)


@pytest.mark.parametrize(("extra", "key"), [
    ('password = "hunter2"\n', "password_env"),
    ('username = "u"\npassword_env = "A"\npassword_file = "p"\n', "password_file"),
    ('password_env = "A"\n', "username"),
    ('username = "u"\npassword_env = "A"\nstarttls = false\n', "starttls"),
    ("every_s = 1\n", "every_s"),
])
def test_problems_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    assert key in problems(tmp_path, NOTIFY + extra)


def test_a_sender_that_is_no_address(tmp_path: Path) -> None:
    text = NOTIFY.replace("gw@example.org", "gateway")
    assert "sender" in problems(tmp_path, text)


def test_the_password_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(write(tmp_path, NOTIFY + 'username = "u"\npassword_env = "AMI_SMTP_PW"\n'))
    assert cfg.settings.notify is not None
    monkeypatch.delenv("AMI_SMTP_PW", raising=False)
    with pytest.raises(ConfigError, match="AMI_SMTP_PW"):
        smtp_notifier(cfg.settings.notify, cfg.file)
    monkeypatch.setenv("AMI_SMTP_PW", "s3cret")
    assert smtp_notifier(cfg.settings.notify, cfg.file).password == "s3cret"
    (tmp_path / "smtp.pw").write_text("from-file\n")
    cfg = load_config(write(tmp_path, NOTIFY + 'username = "u"\npassword_file = "smtp.pw"\n'))
    assert cfg.settings.notify is not None
    notifier = smtp_notifier(cfg.settings.notify, cfg.file)
    assert (notifier.password, notifier.username, notifier.host) == ("from-file", "u",
                                                                     "mail.example.org")


def test_public_url_starts_the_links_in_mails(tmp_path: Path) -> None:
    section = load_config(write(tmp_path, NOTIFY)).settings.notify
    assert section is not None and section.public_url is None
    text = NOTIFY + 'public_url = "https://portal.example.org/"\n'
    section = load_config(write(tmp_path, text)).settings.notify
    assert section is not None and section.public_url == "https://portal.example.org/"
    local = NOTIFY + 'public_url = "http://localhost:8080"\n'
    assert load_config(write(tmp_path, local)).settings.notify is not None


@pytest.mark.parametrize("url", ["http://portal.example.org", "portal.example.org",
                                 "https://portal.example.org/?x=1"])
def test_a_public_url_that_will_not_do(tmp_path: Path, url: str) -> None:
    assert "public_url" in problems(tmp_path, NOTIFY + f'public_url = "{url}"\n')
