#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

Seeds are the real AdmissionReview requests of tests/data, the benchmark body, and variants that
reach the allow paths: the fuzz store (FuzzTargets.cpp) decides at unix time 1800000000, when
alice's code (secret "12345678901234567890", SHA1, 6 digits) and erin's (32-byte secret, SHA256,
8 digits) below are valid. Re-run after changing tests/data: tests/fuzz/make-corpus.py
"""
import base64
import glob
import hashlib
import hmac
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NOW = 1800000000


def totp(secret, at, digits=6, algorithm=hashlib.sha1, period=30):
    mac = hmac.new(secret, struct.pack(">Q", at // period), algorithm).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


ALICE = totp(b"12345678901234567890", NOW)
ERIN = totp(b"12345678901234567890123456789012", NOW, 8, hashlib.sha256)


def write(target, name, data):
    directory = os.path.join(HERE, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(directory, name), "wb") as out:
        out.write(data)


def compact(value):
    return json.dumps(value, separators=(",", ":"))


fixtures = sorted(glob.glob(os.path.join(ROOT, "tests", "data", "*.json")))
for path in fixtures:
    write("review", os.path.basename(path), open(path, "rb").read())

bench = open(os.path.join(ROOT, "bench", "review-4.6k.json")).read()
write("review", "bench-alice-valid.json",
      bench.replace("@USER@", "alice").replace("@CODE@", ALICE).replace("@UID@", "u-bench"))


def variant(fixture, name, change):
    review = json.load(open(glob.glob(os.path.join(ROOT, "tests", "data", fixture + "*"))[0]))
    change(review["request"])
    write("review", name, compact(review))


def with_token(user, code):
    def change(request):
        request["userInfo"]["username"] = user
        request["object"]["metadata"]["annotations"]["twostep.dev/token"] = code
    return change


variant("0004", "alice-valid.json", with_token("alice", ALICE))
variant("0004", "erin-valid-8.json", with_token("erin", ERIN))
variant("0004", "alice-recovery.json", with_token("alice", "K7QM2XVD9FHWC3TP"))
variant("0004", "bob-pending.json", with_token("bob", "000000"))
variant("0004", "dave-disabled.json", with_token("dave", "000000"))
variant("0004", "alice-malformed.json", with_token("alice", "12345"))


def unlock(request):
    request["userInfo"]["username"] = "alice"
    request["object"]["spec"]["nonResourceAttributes"]["verb"] = ALICE
    request["object"]["spec"]["nonResourceAttributes"]["path"] = "/twostep.dev/unlock/5m"


variant("0013", "alice-unlock.json", unlock)


def enroll(user, path, verb):
    def change(request):
        request["userInfo"]["username"] = user
        request["object"]["spec"]["nonResourceAttributes"]["verb"] = verb
        request["object"]["spec"]["nonResourceAttributes"]["path"] = path
    return change


variant("0013", "zed-enroll.json", enroll("zed", "/twostep.dev/enroll", "enroll"))
variant("0013", "alice-enroll.json", enroll("alice", "/twostep.dev/enroll", "enroll"))
variant("0013", "alice-enroll-confirm.json",
        enroll("alice", "/twostep.dev/enroll/confirm", ALICE))


review = json.load(open(fixtures[3]))
review["apiVersion"] = "admission.k8s.io/v1beta1"
write("review", "v1beta1.json", compact(review))
write("review", "empty-object.json", "{}")

# strip_patch: the text of kubectl.kubernetes.io/last-applied-configuration.
last_applied = "kubectl.kubernetes.io/last-applied-configuration"
count = 0
for path in fixtures + [os.path.join(ROOT, "bench", "review-4.6k.json")]:
    request = json.load(open(path))["request"]
    for side in ("object", "oldObject"):
        annotations = ((request.get(side) or {}).get("metadata") or {}).get("annotations") or {}
        if last_applied in annotations:
            count += 1
            write("strip_patch", "last-applied-%d.json" % count, annotations[last_applied])
write("strip_patch", "minimal.json", '{"metadata":{"annotations":{"twostep.dev/token":"1"}}}\n')
write("strip_patch", "no-token.json", '{"metadata":{"annotations":{"a":"b"}}}')
write("strip_patch", "unicode.json",
      '{"metadata":{"annotations":{"twostep.dev/token":"1","n":"\\u00e9\\ud83d\\ude00"}}}')

# base32: secrets as people paste them.
for name, text in [("rfc", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
                   ("lower-spaced", "gezd gnbv gy3t qojq gezd gnbv gy3t qojq"),
                   ("dashed", "GEZD-GNBV-GY3T-QOJQ"),
                   ("padded", "MZXW6YQ="),
                   ("one-byte", "ME======"),
                   ("empty", "")]:
    write("base32", name, text)

# otpauth: URIs as twostep-enroll and other tools write them.
secret = base64.b32encode(b"12345678901234567890").decode().rstrip("=")
for name, uri in [
        ("twostep", "otpauth://totp/twostep:alice?secret=%s&issuer=twostep&algorithm=SHA1"
                    "&digits=6&period=30" % secret),
        ("sha512-8", "otpauth://totp/prod%%20cluster:alice%%40example.com?secret=%s"
                     "&issuer=prod%%20cluster&algorithm=SHA512&digits=8&period=60" % secret),
        ("google-example", "otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP"
                           "&issuer=Example"),
        ("no-issuer", "otpauth://totp/alice?secret=%s" % secret)]:
    write("otpauth", name, uri)
