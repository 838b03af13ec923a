"""The benchmark's request counts: what each kind of access-log line counts as."""

from __future__ import annotations

from harness.registry import AccessEntry

from bench.counts import MirrorRequests, SourceRequests

D1, D2, D3, D4 = (f"sha256:{c * 64}" for c in "1234")
U = "/v2/m/app/blobs/uploads/8d2c"


def test_mirror_blob_requests_over_the_blobs_that_arrived() -> None:
    log = [
        AccessEntry("GET", "/v2/", 200, 2),
        AccessEntry("HEAD", f"/v2/m/app/blobs/{D1}", 404, 0),  # not there: an upload
        AccessEntry("POST", "/v2/m/app/blobs/uploads/", 202, 0),
        AccessEntry("PATCH", U, 202, 0),
        AccessEntry("PUT", f"{U}?_state=x&digest={D1}", 201, 0),
        AccessEntry("POST", f"/v2/m/app/blobs/uploads/?mount={D2}&from=m%2Fbase", 201, 0),
        AccessEntry("POST", f"/v2/m/app/blobs/uploads/?mount={D3}&from=m%2Fbase", 202, 0),
        AccessEntry("PUT", f"{U}?digest={D3}", 201, 0),  # the refused mount, uploaded
        AccessEntry("POST", f"/v2/m/app/blobs/uploads/?digest={D4}", 201, 0),  # monolithic
        AccessEntry("HEAD", f"/v2/m/app/blobs/{D4}", 200, 0),  # already there: nothing more
        AccessEntry("GET", "/v2/m/app/manifests/1.0", 404, 0),
        AccessEntry("PUT", "/v2/m/app/manifests/1.0", 201, 0, "HTTP/2.0"),
        AccessEntry("PUT", "/v2/m/app/manifests/1.1", 400, 0),
    ]
    counts = MirrorRequests.of(log)
    assert (counts.copied, counts.mounted, counts.blobs) == (3, 1, 4)
    assert (counts.mount_attempts, counts.monolithic, counts.patch) == (2, 1, 1)
    assert (counts.blob_head, counts.blob_head_found) == (2, 1)
    assert counts.blob_requests == 2 + 4 + 1 + 2  # HEADs, POSTs, PATCH, PUTs
    assert counts.per_blob() == 9 / 4
    assert (counts.manifest_put, counts.manifest_get) == (2, 1)
    assert (counts.not_found, counts.errors) == (2, 1)  # two lookups of absent things; a 400
    assert counts.protocols == {"": 12, "HTTP/2.0": 1}
    assert counts.per_tag(2) == (13 - 1) / 2
    assert MirrorRequests.of([]).per_blob() is None


def test_source_requests_by_kind() -> None:
    log = [
        AccessEntry("GET", "/v2/", 200, 2),
        AccessEntry("GET", "/v2/app/tags/list?n=100", 200, 40),
        AccessEntry("HEAD", "/v2/app/manifests/1.0", 200, 0),
        AccessEntry("GET", f"/v2/app/manifests/{D1}", 200, 500),
        AccessEntry("GET", f"/v2/app/blobs/{D2}", 200, 1000),
    ]
    counts = SourceRequests.of(log)
    assert (counts.ping, counts.tag_list, counts.manifest_head, counts.manifest_get,
            counts.blob_get) == (1, 1, 1, 1, 1)
    assert counts.bytes_sent == 1542
    assert counts.per_tag(1) == 3.0
