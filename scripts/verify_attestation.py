#!/usr/bin/env python3
"""Verify eKYC attestations independently of the Rust code.

Uses only the published Ed25519 public key and the byte format documented
in docs/attestation.md. Reads a JSON document on stdin:

    {"public_key_hex": "...",
     "request": {"request_id": "...", "id_number": "...",
                 "claims": {"full_name": "...", ...},
                 "purpose_code": "...", "consent_reference": "..."},
     "attestations": [{"payload_hex": "...", "signature_hex": "..."}, ...]}

and prints one JSON object per attestation: {"ok": true, "decision": ...,
"results": [[field, result, score], ...]} or {"ok": false, "error": "..."}.
Exits 0 when it could read its input, whatever the verdicts.
"""

import hashlib
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAGIC = b"ekyc.v1.attestation"
CLAIMS_MAGIC = b"ekyc.v1.claims"
FIELD_CODES = {
    "full_name": 1, "date_of_birth": 2, "gender": 3, "nationality": 4,
    "place_of_origin": 5, "place_of_residence": 6, "id_issue_date": 7,
    "id_expiry_date": 8, "phone_number": 9,
}


def put_str(s):
    b = s.encode("utf-8")
    return struct.pack(">H", len(b)) + b


def claims_digest(id_number, claims):
    out = CLAIMS_MAGIC + put_str(id_number)
    present = sorted((FIELD_CODES[k], v) for k, v in claims.items())
    out += bytes([len(present)])
    for code, value in present:
        out += bytes([code]) + put_str(value)
    return hashlib.sha256(out).digest()


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self):
        return self.take(1)[0]

    def str(self):
        (n,) = struct.unpack(">H", self.take(2))
        return self.take(n).decode("utf-8")


def parse(payload):
    r = Reader(payload)
    if r.take(len(MAGIC)) != MAGIC:
        raise ValueError("wrong magic")
    if r.u8() != 1:
        raise ValueError("unknown format version")
    body = {
        "key_id": r.str(), "tenant_id": r.str(), "request_id": r.str(),
        "transaction_id": r.str(),
        "issued_at_ms": struct.unpack(">q", r.take(8))[0],
        "registry_version": struct.unpack(">Q", r.take(8))[0],
        "claims_digest": r.take(32), "purpose_code": r.str(),
        "consent_digest": r.take(32), "subject_status": r.u8(),
    }
    if body["subject_status"] not in (0, 1, 2):
        raise ValueError("invalid subject status")
    results = []
    for _ in range(r.u8()):
        field, result, score = r.u8(), r.u8(), r.u8()
        if not 1 <= field <= 9 or not 1 <= result <= 4 or (score > 100 and score != 255):
            raise ValueError("invalid result triple")
        results.append([field, result, None if score == 255 else score])
    body["results"] = results
    decision = r.u8()
    if decision not in (1, 2):
        raise ValueError("invalid decision")
    body["decision"] = decision
    if r.pos != len(payload):
        raise ValueError("trailing bytes")
    return body


def check(public_key, request, payload, signature):
    try:
        public_key.verify(signature, payload)
    except InvalidSignature:
        return {"ok": False, "error": "bad signature"}
    try:
        body = parse(payload)
    except (ValueError, UnicodeDecodeError) as e:
        return {"ok": False, "error": f"malformed payload: {e}"}
    if body["claims_digest"] != claims_digest(request["id_number"], request["claims"]):
        return {"ok": False, "error": "claims digest differs from our request"}
    if body["consent_digest"] != hashlib.sha256(request["consent_reference"].encode()).digest():
        return {"ok": False, "error": "consent digest differs from our request"}
    if body["request_id"] != request["request_id"] or body["purpose_code"] != request["purpose_code"]:
        return {"ok": False, "error": "request id or purpose differ from our request"}
    return {"ok": True, "decision": body["decision"], "results": body["results"],
            "transaction_id": body["transaction_id"], "key_id": body["key_id"]}


def main():
    doc = json.load(sys.stdin)
    public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(doc["public_key_hex"]))
    for att in doc["attestations"]:
        verdict = check(public_key, doc["request"], bytes.fromhex(att["payload_hex"]),
                        bytes.fromhex(att["signature_hex"]))
        print(json.dumps(verdict))


if __name__ == "__main__":
    main()
