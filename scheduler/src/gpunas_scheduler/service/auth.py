"""API tokens: issue, verify, revoke.

A token reads ``gpn_<id>_<secret>``: ``id`` (16 hex digits) is the public lookup key, ``secret``
(43 URL-safe characters, 256 random bits) is only ever stored as its SHA-256 digest. A slow
password hash is unnecessary for secrets of that entropy and would cost every request
milliseconds. Token and user records are cached for ``cache_ttl_s`` seconds, and so is the
principal of a token already verified (keyed by the whole token, so a cached answer needs the
exact secret: no parsing or hashing on the hot path). Expiry is checked on every request; a
revocation on this server takes effect at once, one made on another server sharing the database
within ``cache_ttl_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass

from gpunas_scheduler.service.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from gpunas_scheduler.service.ports import Changeset, Clock, Store
from gpunas_scheduler.service.records import Role, TokenRecord, UserRecord

_TOKEN_RE = re.compile(r"^gpn_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: Role
    tenant: str | None
    token_id: str

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN

    def can_read_tenant(self, tenant: str) -> bool:
        return self.is_platform_admin or self.tenant == tenant

    def can_admin_tenant(self, tenant: str) -> bool:
        return self.is_platform_admin or (self.role is Role.TENANT_ADMIN and self.tenant == tenant)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    record: TokenRecord


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(value: str, field: str) -> str:
    if not NAME_RE.match(value):
        raise InvalidInput(
            f"{field}: must be 1-64 characters of a-z, 0-9, '.', '_', '-' starting with a letter or digit",
            field=field,
        )
    return value


class Authenticator:
    def __init__(self, store: Store, clock: Clock, *, cache_ttl_s: float = 5.0, max_ttl_s: float = 365 * 86400.0):
        self._store = store
        self._clock = clock
        self._ttl = cache_ttl_s
        self._max_ttl = max_ttl_s
        self._cache: dict[str, tuple[float, TokenRecord, UserRecord]] = {}
        # whole token -> (verified at, principal, token expiry); only tokens that passed every check
        self._verified: dict[str, tuple[float, Principal, float]] = {}
        self._lock = threading.Lock()
        # Bumped by every revocation: a check that read the token before a revocation must not
        # put what it read into a cache after the revocation emptied it.
        self._generation = 0

    def authenticate(self, bearer: str | None) -> Principal:
        if not bearer:
            raise Unauthenticated("missing bearer token")
        now = self._clock()
        hit = self._verified.get(bearer)
        if hit is not None and now - hit[0] <= self._ttl and now < hit[2]:
            return hit[1]
        generation = self._generation
        principal, expires_at = self._verify(bearer, now, generation)
        with self._lock:
            if generation == self._generation:
                if len(self._verified) > 100_000:
                    self._verified.clear()
                self._verified[bearer] = (now, principal, expires_at)
        return principal

    def _verify(self, bearer: str, now: float, generation: int) -> tuple[Principal, float]:
        m = _TOKEN_RE.match(bearer)
        if m is None:
            raise Unauthenticated("malformed token")
        token_id, secret = m.group(1), m.group(2)
        with self._lock:
            cached = self._cache.get(token_id)
        if cached is None or now - cached[0] > self._ttl:
            token = self._store.get_token(token_id)
            user = None if token is None else self._store.get_user(token.user)
            if token is None or user is None:
                raise Unauthenticated("unknown token")
            with self._lock:
                if generation == self._generation:
                    if len(self._cache) > 100_000:
                        self._cache.clear()
                    self._cache[token_id] = (now, token, user)
        else:
            _, token, user = cached
        if not hmac.compare_digest(token.secret_hash, hash_secret(secret)):
            raise Unauthenticated("unknown token")
        if token.revoked_at is not None:
            raise Unauthenticated("token revoked")
        if token.expires_at <= now:
            raise Unauthenticated("token expired")
        return Principal(user=user.name, role=user.role, tenant=user.tenant, token_id=token.id), token.expires_at

    def issue(self, user: str, ttl_s: float, parent: str | None = None) -> IssuedToken:
        """Create a token for ``user`` (no permission check: callers check first). A token minted
        with token ``parent`` expires no later than it and is revoked with it."""
        if not 0 < ttl_s <= self._max_ttl:
            raise InvalidInput(f"ttl_s: must be between 1 and {int(self._max_ttl)} seconds", field="ttl_s")
        if self._store.get_user(user) is None:
            raise NotFound(f"user {user!r} not found", field="user")
        now = self._clock()
        expires_at = now + ttl_s
        if parent is not None:
            minter = self._store.get_token(parent)
            if minter is None or minter.revoked_at is not None or minter.expires_at <= now:
                raise Unauthenticated("token revoked")
            expires_at = min(expires_at, minter.expires_at)
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        rec = TokenRecord(
            id=token_id,
            user=user,
            secret_hash=hash_secret(secret),
            expires_at=expires_at,
            created_at=now,
            parent=parent,
        )
        self._store.commit(Changeset(tokens=[rec]))
        return IssuedToken(token=f"gpn_{token_id}_{secret}", record=rec)

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke the token and every token minted from it, directly or not."""
        rec = self._store.get_token(token_id)
        if rec is None:
            raise NotFound(f"token {token_id!r} not found", field="token_id")
        children: dict[str, list[TokenRecord]] = {}
        for tk in self._store.list_tokens(None):
            if tk.parent is not None:
                children.setdefault(tk.parent, []).append(tk)
        family = [rec]
        for tk in family:  # grows while walking: breadth first down the tree
            family.extend(children.get(tk.id, []))
        now = self._clock()
        revoked = [tk for tk in family if tk.revoked_at is None]
        for tk in revoked:
            tk.revoked_at = now
        if revoked:
            self._store.commit(Changeset(tokens=revoked))
        ids = {tk.id for tk in family}
        with self._lock:
            self._generation += 1
            for i in ids:
                self._cache.pop(i, None)
            for bearer in [b for b, v in self._verified.items() if v[1].token_id in ids]:
                del self._verified[bearer]
        return rec

    def check_token_owner(self, principal: Principal, token: TokenRecord) -> None:
        """Users may manage their own tokens; tenant admins their tenant's; platform admins all."""
        if principal.is_platform_admin or token.user == principal.user:
            return
        owner = self._store.get_user(token.user)
        if owner is not None and owner.tenant is not None and principal.can_admin_tenant(owner.tenant):
            return
        raise Forbidden("not allowed to manage this token")
