"""An in-memory S3 client for server-free tests of the transfer engine (no moto, no network).

``FakeS3`` has the client methods object_clerk calls. Its errors are real botocore ones:
``ClientError`` with a realistic ``response`` (Error.Code, ResponseMetadata.HTTPStatusCode),
and ``ParamValidationError`` from botocore's own validator over the S3 model. GET bodies are
real ``StreamingBody`` objects. Flags pick the store's behaviour; the defaults are Ceph
RGW 16's, ``FakeS3.aws()`` is AWS-like. ``rgw``: answers carry RGW's headers (its request ids,
``x-rgw-object-type``). ``part_number``: "ignore" (RGW), "honour" (AWS) or "refuse" (400).
``copy_keeps_etag``: CopyObject keeps a multipart source's ETag (RGW) or computes a
single-part one (AWS). ``empty_complete_etag``: RGW's CompleteMultipartUpload answer.
``kms_etags``: "hex", SSE-KMS ETags look like MD5s but are not (AWS), or "text".

Every call is recorded in ``calls`` as (operation, params) before it is validated or
answered. Faults: ``fail_next`` (an error before the store acts, or with ``after=True`` after
it acted: a lost answer), ``corrupt_next_get``, ``cut_next_get``, ``on_call`` (code run before
answering) and ``on_response`` (rewrites the answer). Thread-safe: one lock guards the store.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import itertools
import re
import threading
import types
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError
from botocore.hooks import HierarchicalEmitter
from botocore.response import StreamingBody
from botocore.validate import ParamValidator
from urllib3.exceptions import ProtocolError

MiB = 1024 * 1024
GiB = 1024 * MiB
#: The bucket the fixtures create.
BUCKET = "bkt"
KMS = ("aws:kms", "aws:kms:dsse")
Params = dict[str, Any]
When = Callable[[Params], bool] | None
_MODEL: list[Any] = []
_MODEL_LOCK = threading.Lock()


def _input_shape(op: str) -> Any:
    with _MODEL_LOCK:
        if not _MODEL:
            _MODEL.append(botocore.session.get_session().get_service_model("s3"))
    return _MODEL[0].operation_model(op).input_shape


def client_error(op: str, code: str, status: int, message: str = "") -> ClientError:
    meta = {"HTTPStatusCode": status, "RequestId": uuid.uuid4().hex[:16], "HTTPHeaders": {}}
    response: Any = {"Error": {"Code": code, "Message": message or code}, "ResponseMetadata": meta}
    return ClientError(response, op)


class Lazy:
    """Content never held in memory (huge objects that are only copied): the 'MD5' of a range
    is a digest of its description, the same for the same range of the same object."""

    def __init__(self, size: int, seed: str | None = None, start: int = 0) -> None:
        self.size, self.seed, self.start = size, seed or uuid.uuid4().hex, start

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, s: slice) -> Lazy:
        start, stop, _ = s.indices(self.size)
        return Lazy(max(0, stop - start), self.seed, self.start + start)

    def digest(self) -> bytes:
        return hashlib.md5(f"{self.seed}:{self.start}:{self.size}".encode()).digest()


def _digest(data: bytes | Lazy) -> bytes:
    return data.digest() if isinstance(data, Lazy) else hashlib.md5(data).digest()


def _bytes(body: Any) -> bytes:
    return bytes(body.read() if hasattr(body, "read") else body)


class Obj:
    """A stored object. ``part_sizes`` is its multipart layout (None: single-part)."""

    def __init__(self, data: bytes | Lazy, etag: str, **kw: Any) -> None:
        self.data, self.etag = data, etag
        self.metadata: dict[str, str] = dict(kw.get("metadata") or {})
        self.content_type: str = kw.get("content_type") or "binary/octet-stream"
        self.sse: str | None = kw.get("sse")
        self.ssec: str | None = kw.get("ssec")
        self.part_sizes: list[int] | None = kw.get("part_sizes")
        self.version_id: str | None = kw.get("version_id")
        self.last_modified = dt.datetime.now(dt.timezone.utc)


class _Raw(io.BytesIO):
    """A body ending after ``cut`` bytes: mode 'streaming' raises urllib3's ProtocolError
    (StreamingBody turns it into ResponseStreamingError), 'short' ends (IncompleteReadError)
    and 'protocol' lets the ProtocolError escape unwrapped, as some botocore versions do."""

    def __init__(self, data: bytes, cut: int | None, mode: str) -> None:
        super().__init__(data)
        self.cut, self.mode = cut, mode
        self.consumed = 0

    def read(self, n: int | None = -1) -> bytes:
        if self.cut is not None:
            if self.tell() >= self.cut and n != 0:
                if self.mode == "short":
                    return b""
                raise ProtocolError("Connection broken: IncompleteRead (fake)")
            room = self.cut - self.tell()
            n = room if n is None or n < 0 else min(n, room)
        return super().read(n)

    def close(self) -> None:
        if not self.closed:
            self.consumed = self.tell()
        super().close()

    def readinto(self, b: Any) -> int:
        data = self.read(len(memoryview(b)))
        memoryview(b).cast("B")[: len(data)] = data
        return len(data)


class _UnwrappedBody(StreamingBody):
    def read(self, amt: int | None = None) -> bytes:
        raw = self._raw_stream
        if raw.cut is not None and raw.tell() >= raw.cut:
            raise ProtocolError("Connection broken: IncompleteRead (fake, unwrapped)")
        return super().read(amt)


class _Hook:
    def __init__(self, op: str, kind: str, times: int | None, when: When, **kw: Any) -> None:
        self.op, self.kind, self.times, self.when, self.kw = op, kind, times, when, kw


class FakeS3:
    def __init__(
        self, *, part_number: str = "ignore", copy_keeps_etag: bool = True,
        empty_complete_etag: bool = False, versioning: bool = False, kms_etags: str = "hex",
        rgw: bool = True,
    ) -> None:  # fmt: skip
        self.part_number, self.copy_keeps_etag = part_number, copy_keeps_etag
        self.empty_complete_etag, self.versioning = empty_complete_etag, versioning
        self.kms_etags, self.rgw = kms_etags, rgw
        self.buckets: dict[str, dict[str, Obj]] = {}
        self.bucket_sse: dict[str, str] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Params]] = []
        self.bodies: list[_Raw] = []
        self._hooks: list[_Hook] = []
        self._lock = threading.RLock()
        self._versions = itertools.count(1)
        self.meta = types.SimpleNamespace(
            config=Config(retries={"max_attempts": 0}), endpoint_url="http://fake-s3.invalid",
            region_name="us-east-1", events=HierarchicalEmitter(),
        )  # fmt: skip

    @classmethod
    def aws(cls, **flags: Any) -> FakeS3:
        """A store behaving like AWS S3 (and moto) where RGW differs."""
        defaults = {"part_number": "honour", "copy_keeps_etag": False, "rgw": False}
        return cls(**{**defaults, **flags})

    # ----------------------------------------------------------- test helpers ---
    def create_bucket(self, name: str, *, default_sse: str | None = None) -> None:
        """A bucket; ``default_sse`` ('aws:kms') encrypts what is written without SSE."""
        self.buckets.setdefault(name, {})
        if default_sse:
            self.bucket_sse[name] = default_sse

    def put_raw(
        self, bucket: str, key: str, data: bytes | Lazy, *, part_size: int | None = None,
        sse: str | None = None, ssec: str | None = None, **kw: Any,
    ) -> Obj:  # fmt: skip
        """Store an object as another tool would have (no request recorded), in parts of
        ``part_size`` when given, with the ETag S3 would give it."""
        sizes = None
        if part_size:
            sizes = [min(part_size, len(data) - o) for o in range(0, len(data), part_size)]
        obj = Obj(data, self._etag(data, sizes, sse or ssec), part_sizes=sizes, sse=sse,
                  ssec=ssec, **kw)  # fmt: skip
        with self._lock:
            self.buckets.setdefault(bucket, {})[key] = obj
        return obj

    def obj(self, bucket: str, key: str) -> Obj | None:
        with self._lock:
            return self.buckets.get(bucket, {}).get(key)

    def data(self, bucket: str, key: str) -> bytes:
        obj = self.obj(bucket, key)
        assert obj is not None and isinstance(obj.data, bytes), f"no object {key!r}"
        return obj.data

    def ops(self, op: str | None = None) -> list[Any]:
        """The params of every call of ``op``, or the names of all operations called."""
        with self._lock:
            return [p for o, p in self.calls if o == op] if op else [o for o, _ in self.calls]

    def count(self, op: str) -> int:
        return len(self.ops(op))

    def open_uploads(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.uploads.values())

    def fail_next(
        self, op: str, code: str = "InternalError", status: int = 500, *, times: int | None = 1,
        exc: Any = None, after: bool = False, when: When = None,
    ) -> None:  # fmt: skip
        """The next ``times`` calls of ``op`` (None: all; ``when``: those whose params match)
        raise a ClientError, or ``exc`` (an exception, or a callable making one). ``after``:
        the store acts first, then the answer is lost. One fault per call; the next waits."""
        self._add(_Hook(op, "fail", times, when, code=code, status=status, exc=exc, after=after))

    def corrupt_next_get(self, index: int = 0, *, times: int | None = 1, when: When = None) -> None:
        """Flip the byte at ``index`` of the next GET bodies."""
        self._add(_Hook("GetObject", "corrupt", times, when, index=index))

    def cut_next_get(
        self, after: int, *, mode: str = "streaming", times: int | None = 1, when: When = None
    ) -> None:
        """Break the next GET bodies after ``after`` bytes (see _Raw for the modes)."""
        self._add(_Hook("GetObject", "cut", times, when, after=after, mode=mode))

    def on_call(
        self, op: str, callback: Callable[[Params], Any], *, times: int | None = None,
        when: When = None,
    ) -> None:  # fmt: skip
        """Run ``callback(params)`` before answering calls of ``op`` (it may raise)."""
        self._add(_Hook(op, "before", times, when, fn=callback))

    def on_response(
        self, op: str, callback: Callable[[Params, Any], Any], *, times: int | None = 1,
        when: When = None,
    ) -> None:  # fmt: skip
        """Answer calls of ``op`` with ``callback(params, response)`` instead."""
        self._add(_Hook(op, "response", times, when, fn=callback))

    def clear_faults(self) -> None:
        with self._lock:
            self._hooks.clear()

    def _add(self, hook: _Hook) -> None:
        with self._lock:
            self._hooks.append(hook)

    # -------------------------------------------------------------- plumbing ---
    def _call(self, op: str, params: Params) -> Any:
        with self._lock:
            self.calls.append((op, dict(params)))
            found = [h for h in self._hooks if h.op == op and (h.when is None or h.when(params))]
            fail = next((h for h in found if h.kind == "fail"), None)
            early = fail is not None and not fail.kw["after"]
            hooks: list[_Hook] = []
            for hook in found:
                if hook.kind in ("fail", "corrupt", "cut") and hook.kind in [h.kind for h in hooks]:
                    continue  # one fault of each kind per call
                if early and hook.kind not in ("before", "fail"):
                    continue  # the store will not answer this call: keep them for the next
                hooks.append(hook)
                if hook.times is not None:
                    hook.times -= 1
                    if hook.times <= 0:
                        self._hooks.remove(hook)
        for hook in hooks:
            if hook.kind == "before":
                hook.kw["fn"](params)
        self._validate(op, params)
        if early:
            raise self._fault(op, fail)  # type: ignore[arg-type]
        with self._lock:
            response = getattr(self, f"_{op}")(**params)
        if fail is not None:
            raise self._fault(op, fail)
        for hook in hooks:
            if hook.kind == "response":
                response = hook.kw["fn"](params, response)
        if op == "GetObject" and isinstance(response.get("Body"), bytes):
            response["Body"] = self._body(response["Body"], hooks)
        return response

    @staticmethod
    def _fault(op: str, hook: _Hook) -> BaseException:
        exc = hook.kw["exc"]
        if exc is None:
            return client_error(op, hook.kw["code"], hook.kw["status"])
        return exc if isinstance(exc, BaseException) else exc()

    @staticmethod
    def _validate(op: str, params: Params) -> None:
        checked = dict(params)
        if isinstance(checked.get("CopySource"), dict):  # boto3 makes a string of the dict
            checked["CopySource"] = "{Bucket}/{Key}".format(**checked["CopySource"])
        report = ParamValidator().validate(checked, _input_shape(op))
        if report.has_errors():
            raise ParamValidationError(report=report.generate_report())
        for name, value in (params.get("Metadata") or {}).items():
            if re.search(r"[\r\n]", f"{name}{value}"):  # what http.client refuses to send
                raise ValueError(f"Invalid header value {value!r}")

    def _body(self, data: bytes, hooks: list[_Hook]) -> StreamingBody:
        cut, mode = None, "streaming"
        for hook in hooks:
            i = hook.kw.get("index", len(data))
            if hook.kind == "corrupt" and i < len(data):
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
            if hook.kind == "cut":
                cut, mode = hook.kw["after"], hook.kw["mode"]
        body_type = _UnwrappedBody if mode == "protocol" else StreamingBody
        raw = _Raw(data, cut, mode)
        self.bodies.append(raw)  # how far each body was read: raw.consumed, once closed
        return body_type(raw, len(data))

    def _opaque(self) -> str:
        return uuid.uuid4().hex if self.kms_etags == "hex" else f"kms-{uuid.uuid4().hex[:20]}"

    def _etag(self, data: bytes | Lazy, sizes: list[int] | None, opaque: str | None) -> str:
        if sizes is None:
            return self._opaque() if opaque else _digest(data).hex()
        offsets = itertools.accumulate([0, *sizes])
        digests = [_digest(data[o : o + s]) for o, s in zip(offsets, sizes, strict=False)]
        head = self._opaque() if opaque else hashlib.md5(b"".join(digests)).hexdigest()
        return f"{head}-{len(sizes)}"

    def _bucket(self, op: str, name: str) -> dict[str, Obj]:
        if name not in self.buckets:
            raise client_error(op, "NoSuchBucket", 404, "The specified bucket does not exist")
        return self.buckets[name]

    def _find(self, op: str, bucket: str, key: str) -> Obj:
        obj = self._bucket(op, bucket).get(key)
        if obj is None:  # HEAD has no body, so botocore's code is the status
            raise client_error(op, "404" if op == "HeadObject" else "NoSuchKey", 404, "Not Found")
        return obj

    def _source(self, op: str, p: Params) -> Obj:
        source = p["CopySource"]
        if isinstance(source, str):
            bucket, _, key = urllib.parse.unquote(source.lstrip("/")).partition("/")
        else:
            bucket, key = source["Bucket"], source["Key"]
        obj = self._find(op, bucket, key)
        if p.get("CopySourceIfMatch", f'"{obj.etag}"').strip('"') != obj.etag:
            raise client_error(op, "PreconditionFailed", 412, "At least one precondition failed")
        return obj

    @staticmethod
    def _range(op: str, text: str, size: int) -> tuple[int, int]:
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", text)
        assert match, f"bad range {text!r}"
        start = int(match.group(1))
        if size == 0 or start >= size:
            raise client_error(op, "InvalidRange", 416, "The requested range is not satisfiable")
        return start, min(int(match.group(2) or size - 1), size - 1)

    def _answer(self, status: int = 200, sse: str | None = None, ssec: str | None = None, **out):
        rid = uuid.uuid4().hex
        rid = f"tx{rid[:21]}-{rid[21:29]}-{rid[29:]}-default" if self.rgw else rid[:16].upper()
        headers = {"x-amz-request-id": rid, **_headers_of(out)}
        if self.rgw and "ContentLength" in out:
            headers["x-rgw-object-type"] = "Normal"
        out["ResponseMetadata"] = {
            "HTTPStatusCode": status,
            "RequestId": rid,
            "HTTPHeaders": headers,
        }
        if sse:
            out["ServerSideEncryption"] = sse
        if ssec:
            out["SSECustomerAlgorithm"] = ssec
        return out

    def _store(self, bucket: str, key: str, obj: Obj) -> dict[str, Any]:
        if self.versioning:
            obj.version_id = f"v{next(self._versions)}"
        self.buckets[bucket][key] = obj
        return {"VersionId": obj.version_id} if obj.version_id else {}

    def _check_md5(self, op: str, body: bytes, p: Params) -> bytes:
        digest = hashlib.md5(body).digest()
        if p.get("ContentMD5", b64 := base64.b64encode(digest).decode()) != b64:
            raise client_error(op, "BadDigest", 400, "The Content-MD5 you specified did not match")
        return digest

    def _upload(self, op: str, p: Params) -> dict[str, Any]:
        upload = self.uploads.get(p["UploadId"])
        if upload is None or (upload["Bucket"], upload["Key"]) != (p["Bucket"], p["Key"]):
            raise client_error(op, "NoSuchUpload", 404, "The specified upload does not exist")
        return upload

    # ------------------------------------------------------------ operations ---
    def _read(self, op: str, Bucket: str, Key: str, **p: Any) -> dict[str, Any]:
        obj = self._find(op, Bucket, Key)
        if obj.ssec and not p.get("SSECustomerAlgorithm"):
            raise client_error(op, "InvalidRequest", 400, "The object was stored using SSE-C")
        if p.get("IfMatch", f'"{obj.etag}"').strip('"') != obj.etag:
            raise client_error(op, "PreconditionFailed", 412, "At least one precondition failed")
        size, status, out = len(obj.data), 200, {}
        start, end, number = 0, size - 1, p.get("PartNumber")
        if number and self.part_number == "refuse":
            raise client_error(op, "InvalidArgument", 400, "PartNumber is not supported")
        if number and self.part_number == "honour":
            sizes = obj.part_sizes or [size]
            if number > len(sizes):
                raise client_error(op, "InvalidPartNumber", 416, "The part number is invalid")
            start, status = sum(sizes[: number - 1]), 206
            end = start + sizes[number - 1] - 1
            if obj.part_sizes:
                out["PartsCount"] = len(sizes)
        elif "Range" in p:
            (start, end), status = self._range(op, p["Range"], size), 206
        if status == 206:
            out["ContentRange"] = f"bytes {start}-{end}/{size}"
        if obj.version_id:
            out["VersionId"] = obj.version_id
        if op == "GetObject":
            assert isinstance(obj.data, bytes), "a GET of a Lazy object"
            out["Body"] = obj.data[start : end + 1]
        return self._answer(
            status, obj.sse, obj.ssec, ETag=f'"{obj.etag}"', ContentLength=end - start + 1,
            ContentType=obj.content_type, Metadata=dict(obj.metadata), AcceptRanges="bytes",
            LastModified=obj.last_modified, **out,
        )  # fmt: skip

    def _GetObject(self, **p: Any) -> Any:
        return self._read("GetObject", **p)

    def _HeadObject(self, **p: Any) -> Any:
        return self._read("HeadObject", **p)

    def _PutObject(self, Bucket: str, Key: str, Body: Any = b"", **p: Any) -> Any:
        self._bucket("PutObject", Bucket)
        body = _bytes(Body)
        digest = self._check_md5("PutObject", body, p)
        sse = p.get("ServerSideEncryption") or self.bucket_sse.get(Bucket)
        ssec = p.get("SSECustomerAlgorithm")
        etag = self._opaque() if sse in KMS or ssec else digest.hex()
        obj = Obj(body, etag, sse=sse, ssec=ssec, metadata=p.get("Metadata"),
                  content_type=p.get("ContentType"))  # fmt: skip
        return self._answer(200, sse, ssec, ETag=f'"{obj.etag}"', **self._store(Bucket, Key, obj))

    def _CreateMultipartUpload(self, Bucket: str, Key: str, **p: Any) -> Any:
        self._bucket("CreateMultipartUpload", Bucket)
        if Bucket in self.bucket_sse:
            p.setdefault("ServerSideEncryption", self.bucket_sse[Bucket])
        upload_id = uuid.uuid4().hex
        self.uploads[upload_id] = {
            "Bucket": Bucket, "Key": Key, "UploadId": upload_id, "parts": {}, "params": p,
            "Initiated": dt.datetime.now(dt.timezone.utc),
        }  # fmt: skip
        sse = p.get("ServerSideEncryption")
        return self._answer(200, sse, Bucket=Bucket, Key=Key, UploadId=upload_id)

    @staticmethod
    def _opaque_upload(upload: dict[str, Any]) -> bool:
        p = upload["params"]
        return p.get("ServerSideEncryption") in KMS or bool(p.get("SSECustomerAlgorithm"))

    def _UploadPart(self, **p: Any) -> Any:
        upload = self._upload("UploadPart", p)
        body = _bytes(p["Body"])
        digest = self._check_md5("UploadPart", body, p)
        etag = self._opaque() if self._opaque_upload(upload) else digest.hex()
        upload["parts"][p["PartNumber"]] = (body, etag)
        return self._answer(200, upload["params"].get("ServerSideEncryption"), ETag=f'"{etag}"')

    def _UploadPartCopy(self, **p: Any) -> Any:
        op = "UploadPartCopy"
        upload, source = self._upload(op, p), self._source(op, p)
        start, end = 0, len(source.data) - 1
        if "CopySourceRange" in p:
            start, end = self._range(op, p["CopySourceRange"], len(source.data))
        piece = source.data[start : end + 1]
        etag = self._opaque() if self._opaque_upload(upload) else _digest(piece).hex()
        upload["parts"][p["PartNumber"]] = (piece, etag)
        result = {"ETag": f'"{etag}"', "LastModified": source.last_modified}
        sse = upload["params"].get("ServerSideEncryption")
        return self._answer(200, sse, CopyPartResult=result)

    def _CompleteMultipartUpload(self, MultipartUpload: Any, **p: Any) -> Any:
        op = "CompleteMultipartUpload"
        upload = self._upload(op, p)
        listed = [(x["PartNumber"], x["ETag"].strip('"')) for x in MultipartUpload["Parts"]]
        if not listed or [n for n, _ in listed] != sorted({n for n, _ in listed}):
            raise client_error(op, "InvalidPartOrder", 400, "The parts are not in order")
        pieces = []
        for number, etag in listed:
            part = upload["parts"].get(number)
            if part is None or part[1] != etag:
                raise client_error(op, "InvalidPart", 400, f"part {number} was not found")
            pieces.append(part[0])
        if any(len(piece) < 5 * MiB for piece in pieces[:-1]):
            raise client_error(op, "EntityTooSmall", 400, "A part is smaller than 5 MiB")
        lazy = any(isinstance(piece, Lazy) for piece in pieces)
        data = Lazy(sum(map(len, pieces))) if lazy else b"".join(pieces)
        md5s = b"".join(map(_digest, pieces))
        head = self._opaque() if self._opaque_upload(upload) else hashlib.md5(md5s).hexdigest()
        given = upload["params"]
        obj = Obj(data, f"{head}-{len(pieces)}", part_sizes=[len(x) for x in pieces],
                  metadata=given.get("Metadata"), content_type=given.get("ContentType"),
                  sse=given.get("ServerSideEncryption"),
                  ssec=given.get("SSECustomerAlgorithm"))  # fmt: skip
        del self.uploads[p["UploadId"]]
        etag = "" if self.empty_complete_etag else f'"{obj.etag}"'
        out = self._store(p["Bucket"], p["Key"], obj)
        return self._answer(200, obj.sse, Bucket=p["Bucket"], Key=p["Key"], ETag=etag, **out)

    def _AbortMultipartUpload(self, **p: Any) -> Any:
        del self.uploads[self._upload("AbortMultipartUpload", p)["UploadId"]]
        return self._answer(204)

    def _ListMultipartUploads(self, Bucket: str, Prefix: str = "", **_: Any) -> Any:
        self._bucket("ListMultipartUploads", Bucket)
        found = [{k: u[k] for k in ("Key", "UploadId", "Initiated")} for u in self.uploads.values()
                 if u["Bucket"] == Bucket and u["Key"].startswith(Prefix)]  # fmt: skip
        return self._answer(200, Bucket=Bucket, Uploads=found)

    def _CopyObject(self, Bucket: str, Key: str, **p: Any) -> Any:
        self._bucket("CopyObject", Bucket)
        source = self._source("CopyObject", p)
        if len(source.data) > 5 * GiB:
            raise client_error("CopyObject", "InvalidRequest", 400, "The source exceeds 5 GiB")
        new = p.get("MetadataDirective") == "REPLACE"
        sse = p.get("ServerSideEncryption") or self.bucket_sse.get(Bucket)
        sse = sse or (source.sse if self.copy_keeps_etag else None)
        kw: dict[str, Any] = {
            "metadata": p.get("Metadata") if new else source.metadata, "sse": sse,
            "content_type": p.get("ContentType") if new else source.content_type,
        }  # fmt: skip
        if self.copy_keeps_etag and sse == source.sse:  # Ceph: the same manifest and ETag
            obj = Obj(source.data, source.etag, part_sizes=source.part_sizes, **kw)
        else:  # AWS: a new single-part object
            obj = Obj(source.data, self._etag(source.data, None, sse if sse in KMS else None), **kw)
        result = {"ETag": f'"{obj.etag}"', "LastModified": obj.last_modified}
        return self._answer(200, sse, CopyObjectResult=result, **self._store(Bucket, Key, obj))

    def _DeleteObject(self, Bucket: str, Key: str, **_: Any) -> Any:
        self._bucket("DeleteObject", Bucket).pop(Key, None)
        return self._answer(204)

    def _ListObjectsV2(
        self, Bucket: str, MaxKeys: int = 1000, Prefix: str = "",
        ContinuationToken: str | None = None, StartAfter: str = "", **_: Any,
    ) -> Any:  # fmt: skip
        objects = self._bucket("ListObjectsV2", Bucket)
        after = ContinuationToken[len("token:") :] if ContinuationToken else StartAfter
        keys = sorted(k for k in objects if k.startswith(Prefix) and k > after)
        page, truncated = keys[:MaxKeys], len(keys) > MaxKeys
        out: dict[str, Any] = {"IsTruncated": truncated, "KeyCount": len(page), "Name": Bucket}
        if page:
            out["Contents"] = [
                {"Key": k, "Size": len(objects[k].data), "ETag": f'"{objects[k].etag}"',
                 "LastModified": objects[k].last_modified, "StorageClass": "STANDARD"}
                for k in page
            ]  # fmt: skip
        if truncated:
            out["NextContinuationToken"] = f"token:{page[-1]}"
        return self._answer(200, MaxKeys=MaxKeys, **out)


def _client_method(op: str) -> Callable[..., Any]:
    def method(self: FakeS3, **params: Any) -> Any:
        return self._call(op, params)

    return method


for _op in [name[1:] for name in vars(FakeS3) if name[1:2].isupper()]:
    setattr(FakeS3, re.sub(r"(?<=[a-z])(?=[A-Z])", "_", _op).lower(), _client_method(_op))


# The HTTP headers a real server sends for these parsed fields (what HTTPHeaders holds).
_HEADER_NAMES = {
    "ETag": "etag",
    "ContentLength": "content-length",
    "ContentType": "content-type",
    "VersionId": "x-amz-version-id",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "CacheControl": "cache-control",
}


def _headers_of(out: dict[str, Any]) -> dict[str, str]:
    headers = {name: str(out[field]) for field, name in _HEADER_NAMES.items() if field in out}
    if "ETag" in out:
        headers["etag"] = f'"{str(out["ETag"]).strip(chr(34))}"'
    for name, value in (out.get("Metadata") or {}).items():
        headers[f"x-amz-meta-{name}"] = value
    return headers


def make_clerk(fake: FakeS3 | None = None, *, upload_concurrency: int = 4, **overrides: Any) -> Any:
    """A clerk over ``fake`` with instant retries and no environment: 5 MiB upload parts,
    8 MiB download threshold and chunk, 4 threads. ``overrides`` replace ClerkSettings fields."""
    from object_clerk import ClerkSettings, ObjectClerk

    fields: dict[str, Any] = {
        "retry_tries": 3, "retry_delay": 0, "retry_jitter": 0.0, "retry_max_delay": 0,
        "retry_deadline": None, "multipart_threshold": 5 * MiB,
        "s3_upload_config": {"max_concurrency": upload_concurrency},
        "s3_download_config": {"multipart_threshold": 8 * MiB, "multipart_chunksize": 8 * MiB,
                               "max_concurrency": 4},
    }  # fmt: skip
    settings = ClerkSettings(_env_file=None, **{**fields, **overrides})  # type: ignore[call-arg]
    return ObjectClerk(client=fake if fake is not None else FakeS3(), settings=settings)
