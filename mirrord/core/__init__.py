"""The pure core: data and rules with no I/O (no httpx, anyio, sqlite or files).

- :mod:`~mirrord.core.reference`: image references (parse, normalise, format);
- :mod:`~mirrord.core.oci`: media types, digests, descriptors, manifests, platforms;
- :mod:`~mirrord.core.selection`: which tags a stream imports, in ``oc`` order;
- :mod:`~mirrord.core.imagestream`: image-stream records and ``oc import-image`` rules;
- :mod:`~mirrord.core.modes`: import mode and reference policy;
- :mod:`~mirrord.core.schedule`: durations, intervals and crontab schedules;
- :mod:`~mirrord.core.units`: human-readable sizes and ages, sizes from text;
- :mod:`~mirrord.core.limits`: the caps on upstream data, their defaults and keys.

Each module is public; everything here imports only :mod:`mirrord.errors` and the core.
"""
