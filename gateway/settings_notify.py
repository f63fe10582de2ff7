"""The ``[notify]`` section: the SMTP server usage notifications go out through
(``gateway.notify``), and how often the subscriptions are judged.

Without the section no notice is sent (subscriptions can still be managed). The
password never lives in the file: ``password_env`` (an environment variable) or
``password_file`` (relative to the config file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config_checks import Fixable, read_secret
from gateway.errors import DataError
from gateway.notify.rules import SubscriptionFields, check_fields
from gateway.notify.smtp import SmtpNotifier

__all__ = ["NotifySection", "smtp_notifier"]

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class NotifySection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    smtp_host: Annotated[str, Field(min_length=1)]
    #: 587 is the submission port (STARTTLS); a local relay often listens on 25.
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    #: The From address of every notice.
    sender: Annotated[str, Field(min_length=3, max_length=254)]
    starttls: bool = True
    username: Annotated[str, Field(min_length=1)] | None = None
    password_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    password_file: Path | None = None
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0
    #: How often every subscription is judged.
    every_s: Annotated[float, Field(ge=10, le=86_400)] = 300.0
    #: The portal's address as customers reach it, e.g. "https://portal.example.org":
    #: the links in mails (confirm, unsubscribe, password reset) start with it. Without
    #: it a mail names the path and the token only, and notices carry no
    #: List-Unsubscribe header.
    public_url: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
                                     max_length=512)] | None = None

    @model_validator(mode="after")
    def _checks(self) -> NotifySection:
        try:
            check_fields(SubscriptionFields(kind="no_data", address=self.sender, days=1))
        except DataError:
            raise Fixable(f"sender {self.sender!r} is not an e-mail address",
                          'use a plain address such as "gateway@example.org"',
                          "sender") from None
        if self.password_env is not None and self.password_file is not None:
            raise Fixable("both password_env and password_file are given", "keep one of them",
                          "password_file")
        if self.username is None and (self.password_env or self.password_file):
            raise Fixable("a password without a username", 'add username = "..."', "username")
        if self.public_url is not None and self.public_url.startswith("http://") and \
                self.public_url.split("/")[2].split(":")[0] not in _LOOPBACK:
            raise Fixable(f"public_url {self.public_url!r} is plain http: tokens in its links "
                          "would travel in clear", "use the portal's https:// address",
                          "public_url")
        if self.username is not None and not self.starttls and self.smtp_host not in _LOOPBACK:
            raise Fixable("a login without starttls would send the password in clear",
                          "set starttls = true (only a relay on this host may do without)",
                          "starttls")
        return self


def smtp_notifier(section: NotifySection, file: Path) -> SmtpNotifier:
    """The notifier, its password read now so a missing one is a config problem."""
    password = read_secret(config_file=file, key="notify.password",
                           env=section.password_env, file=section.password_file,
                           what="the SMTP password")
    return SmtpNotifier(section.smtp_host, section.smtp_port, section.sender,
                        starttls=section.starttls, username=section.username,
                        password=password, timeout_s=section.timeout_s)
