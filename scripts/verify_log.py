#!/usr/bin/env python3
"""Verify a decision-log bundle independently of the Rust code.

Implements docs/decision-log.md from that page alone: the RFC 6962 Merkle
tree over SHA-256, the RFC 9162 proof verification algorithms and C2SP
signed-note checkpoints signed with Ed25519. Reads the JSON bundle of its
section 5 from the file named on the command line ("-" for stdin):

    {"vkey": "<name>+<8 hex key hash>+<base64(0x01 || Ed25519 key)>",
     "checkpoints": ["<signed note>", ...],                      oldest first
     "consistency": [{"first": m, "second": n, "proof": ["<b64>", ...]}],
     "inclusion": [{"index": i, "tree_size": n, "entry": "<b64>",
                    "proof": ["<b64>", ...]}],    ("leaf_hash" if erased)
     "entries": {"start": s, "items": ["<b64>" or null, ...],
                 "leaf_hashes": ["<b64>", ...]}}

and prints one line per check, "ok: <what>" or "FAIL: <what>: <why>", then
a summary line. Exits 0 if every check passed, 1 if any failed, 2 if the
input could not be read or parsed. `--self-test` instead builds trees with
a naive RFC 6962 implementation, signs checkpoints with a fresh key, and
checks that honest bundles pass and tampered ones fail.
"""

import base64
import binascii
import contextlib
import copy
import functools
import hashlib
import json
import re
import sys
import types

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DASH = "\u2014 "  # em dash and space, the start of a signature line
NAME_RE = re.compile(r"[^\s+]+")  # C2SP key names: non-empty, no spaces, no "+"
SIZE_RE = re.compile(r"0|[1-9][0-9]*")


class Fail(Exception):
    """A check failed; the message says why."""


def h(*parts):
    """SHA-256 of the concatenated parts."""
    return hashlib.sha256(b"".join(parts)).digest()


def leaf_hash(entry):
    """RFC 6962 leaf hash: SHA-256(0x00 || entry)."""
    return h(b"\x00", entry)


def node(left, right):
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return h(b"\x01", left, right)


def key_hash(name, public_key):
    """C2SP Ed25519 key hash: first 4 bytes of SHA-256(name || 0x0A || 0x01 || key)."""
    return h(name.encode(), b"\n\x01", public_key)[:4]


def b64(s, size=None):
    """Decode canonical standard base64 with padding; optionally require `size` bytes."""
    if not isinstance(s, str):
        raise Fail(f"expected a base64 string, got {type(s).__name__}")
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise Fail(f"invalid base64 {s[:24]!r}") from None
    if base64.b64encode(raw).decode() != s:
        raise Fail(f"non-canonical base64 {s[:24]!r}")
    if size is not None and len(raw) != size:
        raise Fail(f"expected {size} bytes, got {len(raw)}")
    return raw


def hashes(proof):
    """Decode a proof: a list of base64 32-byte hashes."""
    if not isinstance(proof, list):
        raise Fail("proof is not a list")
    return [b64(p, 32) for p in proof]


def integer(x, what):
    """Require a non-negative JSON integer."""
    if type(x) is not int or x < 0:
        raise Fail(f"{what} is not a non-negative integer")
    return x


def mth(leaves):
    """RFC 6962 MTH over leaf hashes, bottom up: pair neighbours, carry an odd last node."""
    if not leaves:
        return h()
    level = list(leaves)
    while len(level) > 1:
        up = [node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = up + level[-1:] if len(level) % 2 else up
    return level[0]


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 section 2.1.3.2; raises Fail unless `proof` puts `leaf` at `index` under `root`."""
    if index >= size:
        raise Fail(f"index {index} is not below tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Fail("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Fail("inclusion proof too short")
    if r != root:
        raise Fail("inclusion proof does not lead to the checkpoint root")


def verify_consistency(m, n, proof, first, second):
    """RFC 9162 section 2.1.4.2 (plus the page's m == 0 and m == n rules); raises Fail."""
    if m > n:
        raise Fail(f"first size {m} is above second size {n}")
    if m == 0 or m == n:
        if proof:
            raise Fail(f"a proof from size {m} to {n} must be empty")
        if m == n and first != second:
            raise Fail("same size, different roots: history rewritten")
        return
    if not proof:
        raise Fail("empty consistency proof")
    if m & (m - 1) == 0:
        proof = [first] + proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise Fail("consistency proof too long")
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Fail("consistency proof too short")
    if fr != first:
        raise Fail("proof does not lead to the older root: history rewritten")
    if sr != second:
        raise Fail("proof does not lead to the newer root: history rewritten")


def parse_vkey(vkey):
    """Parse `<name>+<hash hex>+<base64(0x01 || key)>`; return (name, key hash, public key)."""
    if not isinstance(vkey, str):
        raise Fail("vkey is missing or not a string")
    parts = vkey.split("+", 2)  # the base64 part may itself contain "+"
    if len(parts) != 3 or not NAME_RE.fullmatch(parts[0]):
        raise Fail("not <name>+<key hash>+<key>")
    name, hexhash, data = parts
    if not re.fullmatch(r"[0-9a-f]{8}", hexhash):
        raise Fail("key hash is not 8 lowercase hex digits")
    raw = b64(data, 33)
    if raw[0] != 0x01:
        raise Fail(f"key type {raw[0]:#04x} is not Ed25519 (0x01)")
    if key_hash(name, raw[1:]).hex() != hexhash:
        raise Fail(f"key hash {hexhash} is not that of the key ({key_hash(name, raw[1:]).hex()})")
    return name, bytes.fromhex(hexhash), Ed25519PublicKey.from_public_bytes(raw[1:])


def open_note(note, trusted):
    """Parse a C2SP signed note strictly; return its text lines if `trusted` signed it."""
    if trusted is None:
        raise Fail("no valid vkey to verify it with")
    name, khash, public_key = trusted
    if not isinstance(note, str):
        raise Fail("the note is not a string")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in note):
        raise Fail("control character in the note")
    if not note.endswith("\n"):
        raise Fail("the note does not end with a newline")
    sep = note.find("\n\n")
    if sep < 0:
        raise Fail("no blank line between the text and the signatures")
    text, sigs = note[:sep + 1], note[sep + 2:]
    if not sigs:
        raise Fail("no signature lines")
    signed = False
    for line in sigs[:-1].split("\n"):
        fields = line[len(DASH):].split(" ")
        if not line.startswith(DASH) or len(fields) != 2 or not NAME_RE.fullmatch(fields[0]):
            raise Fail(f"malformed signature line {line[:40]!r}")
        blob = b64(fields[1])
        if len(blob) < 5:
            raise Fail("signature line too short for a key hash and a signature")
        if fields[0] != name or blob[:4] != khash:
            continue  # another key's signature: ignored
        if len(blob) != 4 + 64:
            raise Fail("Ed25519 signature is not 64 bytes")
        try:
            public_key.verify(blob[4:], text.encode())  # signed message: the whole text
        except InvalidSignature:
            raise Fail(f"bad signature by {name}") from None
        signed = True
    if not signed:
        raise Fail(f"no signature by {name}+{khash.hex()}")
    return text[:-1].split("\n")


def open_checkpoint(note, trusted):
    """Open a signed checkpoint (origin, size, root, extension lines); return (size, root)."""
    lines = open_note(note, trusted)
    if len(lines) < 3 or "" in lines:
        raise Fail("the text is not origin, size, root hash and non-empty extension lines")
    origin, size, root = lines[:3]
    if origin != trusted[0]:
        raise Fail(f"origin {origin!r} is not the key name {trusted[0]!r}")
    if not SIZE_RE.fullmatch(size) or int(size) >= 2 ** 64:
        raise Fail(f"invalid tree size {size!r}")
    root = b64(root, 32)
    if size == "0" and root != h():
        raise Fail("size 0 but the root is not SHA-256 of the empty string")
    return int(size), root


def describe(raw):
    """Decode an entry (UTF-8 JSON object; unknown members accepted); return a summary."""
    def reject(const):
        raise Fail(f"{const} is not JSON")
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=reject)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Fail(f"entry is not UTF-8 JSON: {e}") from None
    if not isinstance(obj, dict):
        raise Fail("entry is not a JSON object")
    shown = [f"{k}={obj[k]}" for k in ("time_ms", "method", "decision", "transaction") if k in obj]
    return " ".join(shown) or f"{len(obj)} members"


@contextlib.contextmanager
def check(results, what):
    """Record one check in `results`: ok if the block completes, FAIL with why if it raises."""
    c = types.SimpleNamespace(what=what, ok=False)  # the block may extend c.what
    try:
        yield c
    except (Fail, ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        why = f"missing member {e}" if isinstance(e, KeyError) else str(e) or type(e).__name__
        results.append((False, c.what, why))
    else:
        c.ok = True
        results.append((True, c.what, ""))


def verify_bundle(doc):
    """Run every check of docs/decision-log.md section 5; return the list of (ok, what, why)."""
    rep, trusted = [], None
    with check(rep, "vkey") as c:
        trusted = parse_vkey(doc.get("vkey"))
        c.what += f" {trusted[0]}+{trusted[1].hex()}"
    cps, cons, incl = (doc.get(k, []) for k in ("checkpoints", "consistency", "inclusion"))
    with check(rep, "bundle members"):
        if not isinstance(cps, list) or not cps:
            raise Fail("no checkpoints")
        if not isinstance(cons, list) or not isinstance(incl, list):
            raise Fail("consistency and inclusion must be lists")
    cons, incl = (x if isinstance(x, list) else [] for x in (cons, incl))
    seen, roots = [], {}  # (position, size, root) of verified checkpoints; size -> root
    for i, note in enumerate(cps if isinstance(cps, list) else []):
        with check(rep, f"checkpoint {i}") as c:
            size, root = open_checkpoint(note, trusted)
            c.what += f" (size {size}) signed by the vkey"
            seen.append((i, size, root))
            roots.setdefault(size, root)
    used = set()
    for (i, m, r1), (j, n, r2) in zip(seen, seen[1:]):
        with check(rep, f"checkpoints {i} -> {j} (size {m} -> {n})") as c:
            if n < m:
                raise Fail(f"size went down: truncated (rollback of the newest {m - n} entries)")
            if n == m:
                if r1 != r2:
                    raise Fail("same size, different roots: history rewritten")
                c.what += ": same tree"
                continue
            found = [k for k, it in enumerate(cons) if isinstance(it, dict)
                     and it.get("first") == m and it.get("second") == n]
            if not found:
                raise Fail("no consistency proof in the bundle")
            for k in found:
                used.add(k)
                verify_consistency(m, n, hashes(cons[k]["proof"]), r1, r2)
            c.what += ": consistent"
    for k, it in enumerate(cons):
        if k not in used:
            with check(rep, f"consistency {k}") as c:
                m, n = integer(it["first"], "first"), integer(it["second"], "second")
                c.what += f" (size {m} -> {n})"
                if m not in roots or n not in roots:
                    raise Fail("no verified checkpoint of one of these sizes")
                verify_consistency(m, n, hashes(it["proof"]), roots[m], roots[n])
    claimed = {}  # index -> [(inclusion item number, leaf hash)]
    for k, it in enumerate(incl):
        with check(rep, f"inclusion {k}") as c:
            index, size = integer(it["index"], "index"), integer(it["tree_size"], "tree_size")
            c.what += f" (entry {index} in tree {size})"
            if ("entry" in it) == ("leaf_hash" in it):
                raise Fail("needs exactly one of entry and leaf_hash")
            if "entry" in it:
                raw = b64(it["entry"])
                summary, leaf = describe(raw), leaf_hash(raw)
            else:
                summary, leaf = "erased, leaf hash only", b64(it["leaf_hash"], 32)
            claimed.setdefault(index, []).append((k, leaf))
            if size not in roots:
                raise Fail(f"no verified checkpoint of size {size}")
            verify_inclusion(index, size, leaf, hashes(it["proof"]), roots[size])
            c.what += f": {summary}"
    if "entries" in doc:
        check_entries(rep, doc["entries"], roots, claimed)
    return rep


def check_entries(rep, ent, roots, claimed):
    """Check the `entries` range: leaf hashes, agreement with inclusion items, and the root."""
    with check(rep, "entries range") as c:
        start = integer(ent["start"], "start")
        items, given = ent["items"], ent["leaf_hashes"]
        if not isinstance(items, list) or not isinstance(given, list) or len(items) != len(given):
            raise Fail("items and leaf_hashes must be lists of the same length")
        c.what += f" {start}..{start + len(items) - 1}"
    if not c.ok:
        return
    leaves = []
    for k, (item, lh) in enumerate(zip(items, given)):
        leaves.append(None)
        with check(rep, f"entry {start + k}") as c:
            leaf = b64(lh, 32)
            if item is None:
                c.what += ": erased, leaf hash only"
            else:
                raw = b64(item)
                c.what += f": {describe(raw)}"
                if leaf_hash(raw) != leaf:
                    raise Fail("leaf hash differs from the hash of the entry bytes")
            leaves[-1] = leaf
    for index in sorted(i for i in claimed if start <= i < start + len(items)):
        for k, leaf in claimed[index]:
            with check(rep, f"entry {index} agrees with inclusion {k}"):
                if leaves[index - start] != leaf:
                    raise Fail("the range and the inclusion item give different leaf hashes")
    if start != 0:
        return
    # A range from the first entry claims to be the log: every checkpoint
    # must be the root of its first `size` leaves, so a listing with an
    # entry dropped (or fewer entries than a checkpoint signs) fails.
    for size in sorted(roots):
        with check(rep, f"entries 0..{size - 1} root equals checkpoint of size {size}"):
            if size > len(leaves):
                raise Fail(f"the range lists {len(leaves)} entries, fewer than the checkpoint signs")
            if None in leaves[:size]:
                raise Fail("some leaf hashes are invalid")
            if mth(leaves[:size]) != roots[size]:
                raise Fail("root recomputed from the leaf hashes differs")


# ---- self-test: naive RFC 6962 section 2.1 definitions, kept apart from the verifier ----

def split(n):
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@functools.lru_cache(maxsize=None)
def naive_mth(d):
    """MTH(D[n]) of RFC 6962 2.1, recursively, over a tuple of entries."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = split(len(d))
    return hashlib.sha256(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:])).digest()


def naive_path(m, d):
    """PATH(m, D[n]) of RFC 6962 2.1.1."""
    if len(d) == 1:
        return []
    k = split(len(d))
    if m < k:
        return naive_path(m, d[:k]) + [naive_mth(d[k:])]
    return naive_path(m - k, d[k:]) + [naive_mth(d[:k])]


def naive_proof(m, d, b=True):
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 6962 2.1.2 (0 < m <= n)."""
    if m == len(d):
        return [] if b else [naive_mth(d)]
    k = split(len(d))
    if m <= k:
        return naive_proof(m, d[:k], b) + [naive_mth(d[k:])]
    return naive_proof(m - k, d[k:], False) + [naive_mth(d[:k])]


def enc(raw):
    """Standard base64 with padding."""
    return base64.b64encode(raw).decode()


def make_entry(i, tag="a"):
    """One decision-log entry (section 1 member order, compact JSON)."""
    return json.dumps({
        "v": 1, "time_ms": 1700000000000 + 1000 * i, "tenant": "t-1", "api_key": "k-1",
        "purpose": "KYC", "consent": "ab" * 32, "transaction": f"tx-{tag}-{i}",
        "request": f"req-{i}", "registry_version": 3, "method": "Verify",
        "fields": [["full_name", "MATCH"]], "decision": "YES", "subject": "cd" * 32,
    }, separators=(",", ":")).encode()


def sign_note(key, name, size, root, origin=None, khash=None, extra=""):
    """A signed-note checkpoint; origin, key hash and extension lines can be overridden."""
    text = f"{name if origin is None else origin}\n{size}\n{enc(root)}\n{extra}"
    kh = khash or key_hash(name, key.public_key().public_bytes_raw())
    return f"{text}\n{DASH}{name} {enc(kh + key.sign(text.encode()))}\n"


def make_bundle(key, name, data, sizes, erased=()):
    """An honest bundle: checkpoints of the prefixes `sizes`, all proofs, the full range."""
    d = tuple(data)
    n = max(sizes)
    pub = key.public_key().public_bytes_raw()

    def item(i, s):
        it = {"index": i, "tree_size": s, "proof": [enc(p) for p in naive_path(i, d[:s])]}
        if i in erased:
            it["leaf_hash"] = enc(naive_mth(d[i:i + 1]))
        else:
            it["entry"] = enc(d[i])
        return it

    return {
        "vkey": f"{name}+{key_hash(name, pub).hex()}+" + enc(b"\x01" + pub),
        "checkpoints": [sign_note(key, name, s, naive_mth(d[:s])) for s in sizes],
        "consistency": [{"first": a, "second": b,
                         "proof": [enc(p) for p in (naive_proof(a, d[:b]) if a else [])]}
                        for a, b in zip(sizes, sizes[1:]) if a < b],
        "inclusion": [item(i, s) for s in sorted(set(sizes)) for i in range(s)],
        "entries": {"start": 0, "items": [None if i in erased else enc(d[i]) for i in range(n)],
                    "leaf_hashes": [enc(naive_mth(d[i:i + 1])) for i in range(n)]},
    }


def flip(b64text, pos=-1):
    """Flip the low bit of the byte at `pos` (default: the last digit, which stays a digit)."""
    raw = bytearray(base64.b64decode(b64text))
    if pos == -1:
        pos = max(i for i, ch in enumerate(raw) if chr(ch).isdigit())
    raw[pos] ^= 1
    return enc(bytes(raw))


# Known answers: golang.org/x/mod/sumdb/note's example note and keys (the TEST key's
# base64 holds a "+"), and the roots of the 8-leaf tree of the CT/Trillian test data.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SEED = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # of PRIVATE+KEY+PeterNeumann+c74f20a3+...
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = GO_TEXT + "\n" + DASH + "PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZIn" \
    "NIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
PLUS_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
             "606162636465666768696a6b6c6d6e6f"]
CT_ROOTS = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]


def known_answers():
    """Check the verifier and the naive tree against the published vectors; return failures."""
    bad = []
    go = parse_vkey(GO_VKEY)
    if open_note(GO_NOTE, go) != GO_TEXT.split("\n")[:-1]:
        bad.append("Go example note")
    seed = Ed25519PrivateKey.from_private_bytes(base64.b64decode(GO_SEED)[1:])
    if enc(go[1] + seed.sign(GO_TEXT.encode())) != GO_NOTE.rsplit(" ", 1)[1][:-1]:
        bad.append("signing the Go example text")
    with contextlib.suppress(Fail):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), go)
        bad.append("tampered Go example note accepted")
    if parse_vkey(PLUS_VKEY)[0] != "TEST":
        bad.append("vkey with '+' in its base64")
    leaves = [bytes.fromhex(x) for x in CT_LEAVES]
    for n in range(1, 9):
        want = bytes.fromhex(CT_ROOTS[n - 1])
        if not naive_mth(tuple(leaves[:n])) == mth([leaf_hash(x) for x in leaves[:n]]) == want:
            bad.append(f"CT root of size {n}")
    return bad


def self_test():
    """Known answers; honest bundles up to size 40 pass; each tampering fails. Print, return rc."""
    key, name = Ed25519PrivateKey.generate(), "ekyc.local/decision-log"
    data = [make_entry(i) for i in range(40)]
    verdicts = []  # (passed, line)
    try:
        bad = known_answers()
    except Fail as e:
        bad = [str(e)]
    verdicts.append((not bad, "known answers (Go sumdb/note, CT test tree)"
                     + "".join(f": {x}" for x in bad)))
    bad, bundles = [], 0
    for n in range(1, 41):
        for m in range(0, n + 1):
            bundle = make_bundle(key, name, data[:n], [m, n], {i for i in range(n) if i % 7 == 3})
            bad += [f"sizes {m} -> {n}: {what}: {why}"
                    for ok, what, why in verify_bundle(bundle) if not ok]
            bundles += 1
    verdicts.append((not bad, f"{bundles} honest bundles pass (checkpoints m -> n for 0 <= m <= n <= 40,"
                     " every index)" + "".join(f": {x}" for x in bad[:1])))

    d, other = tuple(data[:20]), tuple(data[:11]) + tuple(make_entry(i, "b") for i in range(11, 20))
    base = make_bundle(key, name, d, [5, 13], {3})
    note = lambda s, dd=d, **kw: sign_note(key, name, s, naive_mth(dd[:s]), **kw)
    incl = lambda b, i, s: next(x for x in b["inclusion"] if x["index"] == i and x["tree_size"] == s)

    def drop_both(b):
        for k in ("items", "leaf_hashes"):
            del b["entries"][k][6]
        b["entries"]["items"].append(enc(d[13]))
        b["entries"]["leaf_hashes"].append(enc(naive_mth(d[13:14])))

    def cp(text):
        """A mutation that replaces the newest checkpoint (size 13) with `text`."""
        return lambda b: b["checkpoints"].__setitem__(1, text(b) if callable(text) else text)

    def bad_sig(b):
        """Flip a bit of the signature (not the key hash) of the newest checkpoint."""
        head, blob = b["checkpoints"][1][:-1].rsplit(" ", 1)
        return f"{head} {flip(blob, 10)}\n"

    rival = Ed25519PrivateKey.generate()
    vkey_hash = lambda b: bytes.fromhex(b["vkey"].split("+")[1])
    cases = [  # (name, mutation, expected substring of a FAIL line, or None: must pass)
        ("untouched bundle", lambda b: None, None),
        ("foreign signature line ignored",
         cp(lambda b: b["checkpoints"][1] + f"{DASH}other.example/log {enc(bytes(68))}\n"), None),
        ("signed extension line accepted", cp(note(13, extra="ext line\n")), None),
        ("tampered entry byte (range)",
         lambda b: b["entries"]["items"].__setitem__(7, flip(b["entries"]["items"][7])),
         "leaf hash differs"),
        ("tampered entry byte (inclusion)",
         lambda b: incl(b, 7, 13).__setitem__("entry", flip(incl(b, 7, 13)["entry"])), "does not lead"),
        ("dropped entry, items shifted",
         lambda b: (b["entries"]["items"].pop(6), b["entries"]["items"].append(enc(d[13]))),
         "leaf hash differs"),
        ("dropped entry, hashes recomputed", drop_both, "root recomputed from the leaf hashes differs"),
        ("tampered inclusion proof",
         lambda b: incl(b, 9, 13)["proof"].__setitem__(1, flip(incl(b, 9, 13)["proof"][1], 0)),
         "does not lead"),
        ("extra inclusion proof element", lambda b: incl(b, 9, 13)["proof"].append(enc(bytes(32))), "too long"),
        ("missing inclusion proof element", lambda b: incl(b, 9, 13)["proof"].pop(), "too short"),
        ("tampered consistency proof",
         lambda b: b["consistency"][0]["proof"].__setitem__(
             0, flip(b["consistency"][0]["proof"][0], 0)),
         "rewritten"),
        ("extra consistency proof element",
         lambda b: b["consistency"][0]["proof"].append(enc(bytes(32))), "too long"),
        ("missing consistency proof element", lambda b: b["consistency"][0]["proof"].pop(), "too short"),
        ("missing consistency proof", lambda b: b["consistency"].clear(), "no consistency proof"),
        ("truncated newer checkpoint", lambda b: b["checkpoints"].append(note(9)), "truncated"),
        ("rewritten tail, same size", lambda b: b["checkpoints"].append(note(13, other)), "rewritten"),
        ("rewritten tail, larger tree", lambda b: (
            b["checkpoints"].append(note(20, other)),
            b["consistency"].append({"first": 13, "second": 20,
                                     "proof": [enc(p) for p in naive_proof(13, other)]})), "rewritten"),
        ("bad signature", cp(bad_sig), "bad signature"),
        ("signed by another key",
         cp(lambda b: sign_note(rival, name, 13, naive_mth(d[:13]), khash=vkey_hash(b))), "bad signature"),
        ("unsigned extension line", cp(lambda b: b["checkpoints"][1].replace("\n\n", "\next\n\n")),
         "bad signature"),
        ("wrong key hash in note", cp(note(13, khash=b"\0\0\0\0")), "no signature by"),
        ("wrong key hash in vkey",
         lambda b: b.__setitem__("vkey", b["vkey"].replace(vkey_hash(b).hex(), "00000000", 1)), "vkey"),
        ("wrong origin", cp(note(13, origin="evil.example/log")), "origin"),
        ("other key name only", cp(sign_note(key, "other/log", 13, naive_mth(d[:13]))), "no signature by"),
        ("leading zero in size", cp(sign_note(key, name, "013", naive_mth(d[:13]))), "invalid tree size"),
        ("short root hash", cp(sign_note(key, name, 13, naive_mth(d[:13])[:31])), "expected 32 bytes"),
        ("no final newline", cp(lambda b: b["checkpoints"][1][:-1]), "newline"),
        ("no blank line", cp(lambda b: b["checkpoints"][1].replace("\n\n", "\n")), "blank line"),
        ("size 0 with a non-empty root",
         lambda b: b["checkpoints"].insert(0, sign_note(key, name, 0, naive_mth(d[:1]))), "size 0"),
        ("inclusion against a missing size", lambda b: b["inclusion"].append(
            {"index": 2, "tree_size": 12, "entry": enc(d[2]),
             "proof": [enc(p) for p in naive_path(2, d[:12])]}),
         "no verified checkpoint of size 12"),
        ("entry not a JSON object", lambda b: (
            b["entries"]["items"].__setitem__(8, enc(b"[1,2]")),
            b["entries"]["leaf_hashes"].__setitem__(8, enc(naive_mth((b"[1,2]",))))),
         "not a JSON object"),
    ]
    for label, mutate, expect in cases:
        bundle = copy.deepcopy(base)
        mutate(bundle)
        lines = [f"{what}: {why}" for ok, what, why in verify_bundle(bundle) if not ok]
        good = not lines if expect is None else any(expect in line for line in lines)
        want = "passes" if expect is None else f"fails with {expect!r}"
        verdicts.append((good, f"{label} {want}: " + ("; ".join(lines[:2]) or "no failure")))
    for good, line in verdicts:
        print(("ok: " if good else "FAIL: ") + line)
    passed = sum(good for good, _ in verdicts)
    total = len(verdicts)
    print(f"self-test: {passed} of {total} passed" + ("" if passed == total else ", FAILED"))
    return 0 if passed == total else 1


def main(argv):
    """Command line: BUNDLE.json, "-" for stdin, or --self-test."""
    if argv == ["--self-test"]:
        return self_test()
    if len(argv) != 1:
        print("usage: verify_log.py BUNDLE.json | - | --self-test", file=sys.stderr)
        return 2
    try:
        if argv[0] == "-":
            text = sys.stdin.read()
        else:
            with open(argv[0], encoding="utf-8") as f:
                text = f.read()
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("the bundle is not a JSON object")
    except (OSError, ValueError) as e:
        print(f"error: cannot read the bundle: {e}", file=sys.stderr)
        return 2
    results = verify_bundle(doc)
    for ok, what, why in results:
        print(f"ok: {what}" if ok else f"FAIL: {what}: {why}")
    failed = sum(not ok for ok, _, _ in results)
    print(f"{len(results) - failed} of {len(results)} checks passed"
          + (f", {failed} FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
