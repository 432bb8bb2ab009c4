#!/usr/bin/env python3
"""Recompute the key-derivation test vectors with the reference C Argon2.

argon2-cffi binds the reference implementation; its low-level context API
exposes the Argon2 `secret` input the scheme feeds the pepper into. Prints
a JSON object that the Rust test compares with its own derivation (see
docs/hashing.md for the scheme).
"""

import hashlib
import hmac
import json

from argon2.low_level import ffi, lib

PEPPER = bytes(range(32))
ID_NUMBER = b"079085001234"


def argon2id(password, salt, secret, m_kib, t, p):
    out = ffi.new("uint8_t[]", 32)
    pwd, slt, sec = (ffi.new("uint8_t[]", x) for x in (password, salt, secret))
    ctx = ffi.new("argon2_context *")
    ctx.out, ctx.outlen = out, 32
    ctx.pwd, ctx.pwdlen = pwd, len(password)
    ctx.salt, ctx.saltlen = slt, len(salt)
    ctx.secret, ctx.secretlen = sec, len(secret)
    ctx.ad, ctx.adlen = ffi.NULL, 0
    ctx.t_cost, ctx.m_cost, ctx.lanes, ctx.threads = t, m_kib, p, p
    ctx.version = lib.ARGON2_VERSION_13
    ctx.allocate_cbk = ctx.free_cbk = ffi.NULL
    ctx.flags = lib.ARGON2_DEFAULT_FLAGS
    rc = lib.argon2_ctx(ctx, lib.Argon2_id)
    if rc != 0:
        raise RuntimeError(ffi.string(lib.argon2_error_message(rc)).decode())
    return bytes(out)


def tag(key, label, value):
    return hmac.new(key, label + b"\x00" + value.encode(), hashlib.sha256).digest()[:16]


def main():
    salt = hmac.new(PEPPER, b"salt" + ID_NUMBER, hashlib.sha256).digest()[:16]
    k = argon2id(ID_NUMBER, salt, PEPPER, 64, 1, 1)
    k_default = argon2id(ID_NUMBER, salt, PEPPER, 19456, 2, 1)
    print(json.dumps({
        "salt": salt.hex(),
        "locator": hmac.new(k, b"locator", hashlib.sha256).hexdigest(),
        "tag_full_name": tag(k, b"full_name", "nguyễn văn an").hex(),
        "tag_full_name_folded": tag(k, b"full_name.folded", "nguyen van an").hex(),
        "audit_subject": hmac.new(k, b"audit", hashlib.sha256).hexdigest(),
        "locator_default_params": hmac.new(k_default, b"locator", hashlib.sha256).hexdigest(),
    }))


if __name__ == "__main__":
    main()
