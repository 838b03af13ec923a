"""Documents the hostile registry serves: real images and lazily generated monsters.

    Doc.from_image(build_image(...))     # an image/index built by images.py, children included
    huge_manifest(200 * MiB, image)      # a valid OCI manifest padded to exactly 200 MiB
    many_layers(100_000, image)          # an OCI manifest with 100,000 distinct (servable) layers
    nested_index(Doc.from_image(image), depth=50)   # index -> index -> ... -> image
    cyclic_index()                       # an index whose child is (claims to be) itself
    GeneratedTags(1_000_000)             # a lazy tag list: "tag-0000000" ... "tag-0999999"

Bodies are produced by generators on every request, so the fake never holds a large document
in memory; a document's size and digest are computed by one streaming pass when first needed
(e.g. ~0.5 s for 200 MiB) and cached. `WEIRD_TAGS` and `BAD_DIGESTS` name the hostile inputs
issue 10 lists.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import overload

from .images import OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Image, sha256

__all__ = [
    "BAD_DIGESTS",
    "WEIRD_TAGS",
    "BlobSource",
    "Doc",
    "GeneratedTags",
    "MiB",
    "cyclic_index",
    "huge_manifest",
    "many_layers",
    "nested_index",
]

MiB = 1024 * 1024
_CHUNK = 64 * 1024

#: tag names no registry should hand out and no client should use as-is
WEIRD_TAGS: tuple[str, ...] = (
    "../../../../other/repo/manifests/latest",
    "sha256:/etc/passwd",
    "sha256:/dev/zero",
    "a/b",
    "..",
    ".",
    "latest\n",
    "nul\x00byte",
    "bell\x07ring",
    "tab\tstop",
    "esc\x1b[31mred",
    "del\x7f",
    "x" * 200,
    "ünïcödé",
    "日本語",
    "-dash-first",
    ".dot-first",
    "",
    " space",
    "back\\slash",
    "%2e%2e",
    "q?x=1",
    "hash#frag",
)

#: Docker-Content-Digest values a client must refuse (`wrong` is well-formed but not the body's)
BAD_DIGESTS: dict[str, str] = {
    "wrong": sha256(b"not the manifest you asked for"),
    "foo": "foo:bar",
    "shake": "shake_128:00",
    "md5": "md5:d41d8cd98f00b204e9800998ecf8427e",
    "short": "sha256:abc123",
    "long": "sha256:" + "0" * 65,
    "upper": "sha256:" + "A" * 64,
    "not-hex": "sha256:" + "z" * 64,
    "empty": "",
    "no-algorithm": "0" * 64,
    "traversal": "sha256:../../../../etc/passwd",
}

BlobSource = Callable[[str], bytes | None]


class Doc:
    """A manifest document: media type, a body factory, and what it refers to.

    `children` are documents served by digest too (index entries); `aliases` are extra
    digests under which this same body is served (a lie: the body does not hash to them);
    `blobs` resolves blob digests the document refers to.
    """

    def __init__(self, media_type: str, body: Callable[[], Iterable[bytes]], *,
                 size: int | None = None, digest: str | None = None,
                 children: Sequence[Doc] = (), aliases: Sequence[str] = (),
                 blobs: BlobSource | None = None, label: str = "") -> None:
        self.media_type = media_type
        self._body = body
        self._size = size
        self._digest = digest
        self.children = tuple(children)
        self.aliases = tuple(aliases)
        self._blobs = blobs
        self.label = label or media_type.rsplit(".", 2)[-2]
        self._lock = threading.Lock()

    @classmethod
    def of(cls, raw: bytes, media_type: str, *, children: Sequence[Doc] = (),
           aliases: Sequence[str] = (), blobs: BlobSource | None = None,
           label: str = "") -> Doc:
        """A small document held as bytes."""
        return cls(media_type, lambda: (raw,), size=len(raw), digest=sha256(raw),
                   children=children, aliases=aliases, blobs=blobs, label=label)

    @property
    def measured(self) -> bool:
        """Whether size and digest are known without reading the body."""
        return self._size is not None and self._digest is not None

    @classmethod
    def from_image(cls, image: Image) -> Doc:
        """The image (or index) as pushed by images.py: same bytes, children, blobs."""
        blobs = {b.digest: b.data for b in image.blobs}
        raw = image.raw
        return cls(image.media_type, lambda: (raw,), size=len(raw), digest=image.digest,
                   children=[cls.from_image(c) for c in image.children], blobs=blobs.get,
                   label=image.tag or image.digest[:19])

    def chunks(self) -> Iterator[bytes]:
        return iter(self._body())

    def _measure(self) -> None:
        with self._lock:
            if self._size is not None and self._digest is not None:
                return
            h, n = hashlib.sha256(), 0
            for chunk in self.chunks():
                h.update(chunk)
                n += len(chunk)
            self._size, self._digest = n, "sha256:" + h.hexdigest()

    @property
    def size(self) -> int:
        if self._size is None:
            self._measure()
        assert self._size is not None
        return self._size

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._measure()
        assert self._digest is not None
        return self._digest

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def walk(self) -> Iterator[Doc]:
        """This document and every child, depth first (iterative: indexes may nest deep)."""
        stack: list[Doc] = [self]
        seen: set[int] = set()
        while stack:
            doc = stack.pop()
            if id(doc) in seen:
                continue
            seen.add(id(doc))
            yield doc
            stack.extend(reversed(doc.children))

    def blob(self, digest: str) -> bytes | None:
        return self._blobs(digest) if self._blobs else None

    def __repr__(self) -> str:
        return f"<Doc {self.label} {self._digest or '(digest not computed)'}>"


def _image_blobs(image: Image) -> Mapping[str, bytes]:
    return {b.digest: b.data for b in image.blobs}


def huge_manifest(size: int, base: Image) -> Doc:
    """A valid OCI image manifest (`base`'s config and layers) padded with one annotation to
    exactly `size` bytes."""
    head = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": base.config.descriptor() if base.config else {},
            "layers": [b.descriptor() for b in base.layers]}
    prefix = json.dumps(head, separators=(",", ":"))[:-1].encode() + (
        b',"annotations":{"org.example.padding":"')
    suffix = b'"}}'
    pad = size - len(prefix) - len(suffix)
    if pad < 0:
        raise ValueError(f"size {size} is below the minimum {len(prefix) + len(suffix)}")

    def body() -> Iterator[bytes]:
        yield prefix
        block = b"a" * _CHUNK
        for _ in range(pad // _CHUNK):
            yield block
        yield b"a" * (pad % _CHUNK)
        yield suffix

    return Doc(OCI_MANIFEST, body, size=size, blobs=_image_blobs(base).get,
               label=f"huge-{size}")


def _tiny_layer(i: int) -> bytes:
    return b"hostile layer %d\n" % i


def many_layers(count: int, base: Image) -> Doc:
    """An OCI image manifest with `base`'s config and `count` distinct tiny layers (each
    servable; the digest index behind them is built on the first blob request)."""
    if base.config is None:
        raise ValueError("the base must be an image with a config")
    config = json.dumps(base.config.descriptor(), separators=(",", ":")).encode()
    index: dict[bytes, int] = {}
    lock = threading.Lock()

    def body() -> Iterator[bytes]:
        yield b'{"schemaVersion":2,"mediaType":"%s","config":%s,"layers":[' % (
            OCI_MANIFEST.encode(), config)
        batch: list[bytes] = []
        for i in range(count):
            data = _tiny_layer(i)
            batch.append(b'{"mediaType":"%s","digest":"sha256:%s","size":%d}' % (
                OCI_LAYER.encode(), hashlib.sha256(data).hexdigest().encode(), len(data)))
            if len(batch) == 1000:
                yield (b"," if i >= 1000 else b"") + b",".join(batch)
                batch = []
        if batch:
            yield (b"," if count > len(batch) else b"") + b",".join(batch)
        yield b"]}"

    base_blobs = _image_blobs(base)

    def lookup(digest: str) -> bytes | None:
        if digest in base_blobs:
            return base_blobs[digest]
        if not digest.startswith("sha256:") or len(digest) != 71:
            return None
        with lock:
            if not index:
                for i in range(count):
                    index[hashlib.sha256(_tiny_layer(i)).digest()] = i
        try:
            number = index.get(bytes.fromhex(digest[7:]))
        except ValueError:
            return None
        return _tiny_layer(number) if number is not None else None

    return Doc(OCI_MANIFEST, body, blobs=lookup, label=f"layers-{count}")


def _index_raw(entries: Iterable[dict[str, object]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)},
                      separators=(",", ":")).encode()


def nested_index(leaf: Doc, depth: int) -> Doc:
    """`depth` OCI indexes, each listing the next, the last listing `leaf`."""
    doc = leaf
    for level in range(depth):
        doc = Doc.of(_index_raw([doc.descriptor()]), OCI_INDEX, children=[doc],
                     label=f"nest-{level + 1}")
    return doc


def cyclic_index(leaf: Doc | None = None) -> Doc:
    """An OCI index listing (a fixed fake digest of) itself, optionally after `leaf`. The
    registry serves this body under that fake digest too, so a client that does not check
    digests loops; one that does sees a digest mismatch."""
    alias = sha256(b"hostile cyclic index")
    entries: list[dict[str, object]] = [leaf.descriptor()] if leaf else []
    # the size must be the body's own length, which depends on the digits of the size
    size = 0
    for _ in range(3):
        raw = _index_raw([*entries, {"mediaType": OCI_INDEX, "digest": alias, "size": size}])
        size = len(raw)
    return Doc.of(raw, OCI_INDEX, children=[leaf] if leaf else [], aliases=[alias],
                  label="cycle")


class GeneratedTags(Sequence[str]):
    """`total` tags `prefix + zero-padded index`, in sorted order, never materialised."""

    def __init__(self, total: int, prefix: str = "tag-", *, _range: range | None = None) -> None:
        self.total = total  # of the whole generated list (a slice's len() is smaller)
        self.prefix = prefix
        self._width = len(str(max(total - 1, 0)))
        self._range = range(total) if _range is None else _range

    def __len__(self) -> int:
        return len(self._range)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> GeneratedTags: ...
    def __getitem__(self, i: int | slice) -> str | GeneratedTags:
        if isinstance(i, slice):
            return GeneratedTags(self.total, self.prefix, _range=self._range[i])
        return f"{self.prefix}{self._range[i]:0{self._width}d}"

    def __iter__(self) -> Iterator[str]:
        prefix, width = self.prefix, self._width
        return (f"{prefix}{n:0{width}d}" for n in self._range)

    def _number(self, tag: object) -> int | None:
        if not isinstance(tag, str) or not tag.startswith(self.prefix):
            return None
        digits = tag[len(self.prefix):]
        if len(digits) != self._width or not digits.isascii() or not digits.isdigit():
            return None
        n = int(digits)
        return n if n in self._range else None

    def __contains__(self, tag: object) -> bool:
        return self._number(tag) is not None

    def index(self, tag: object, start: int = 0, stop: int | None = None) -> int:
        n = self._number(tag)
        if n is None:
            raise ValueError(f"{tag!r} is not in the generated tags")
        return self._range.index(n)

    def __repr__(self) -> str:
        return f"<GeneratedTags {len(self)} of {self.prefix}*>"
