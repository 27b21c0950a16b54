"""Credentials at rest: `enc:<token>` values encrypted with Fernet keys, newest first (MultiFernet)."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from worker.errors import ConfigError

PREFIX = "enc:"


class Crypto:
    """Encrypts with the newest key; decrypts with any key, so keys can be rotated."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet: MultiFernet | None = None
        self._newest: Fernet | None = None
        if keys:
            try:
                fernets = [Fernet(k.encode()) for k in keys]
                self._fernet, self._newest = MultiFernet(fernets), fernets[0]
            except (ValueError, TypeError):
                raise ConfigError(
                    "SMS_ENCRYPTION_KEYS: a key is not a valid Fernet key (32 url-safe base64 bytes)"
                ) from None

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def encrypt(self, value: str) -> str:
        if self._fernet is None:
            raise ConfigError("SMS_ENCRYPTION_KEYS is not set: no key to encrypt with")
        return PREFIX + self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str, *, where: str) -> str:
        """The plaintext of an `enc:` value; `where` names the field for the error."""
        if self._fernet is None:
            raise ConfigError(f"{where}: encrypted value but SMS_ENCRYPTION_KEYS is not set")
        try:
            return self._fernet.decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise ConfigError(f"{where}: cannot decrypt: wrong encryption key, or a damaged value") from None

    def is_current(self, value: str) -> bool:
        """Whether the newest key alone decrypts this `enc:` value (so rotating it would change nothing)."""
        if self._newest is None:
            return False
        try:
            self._newest.decrypt(value[len(PREFIX) :].encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, value: str, *, where: str) -> str:
        """The same secret re-encrypted with the newest key."""
        if self._fernet is None:
            raise ConfigError("SMS_ENCRYPTION_KEYS is not set: no key to rotate to")
        try:
            return PREFIX + self._fernet.rotate(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise ConfigError(f"{where}: cannot decrypt: wrong encryption key, or a damaged value") from None
