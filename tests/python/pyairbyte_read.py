"""Drives source-postmark through PyAirbyte, the way an Airbyte user's Python would.

PyAirbyte validates the config against the connector's `spec`, runs `check`, `discover` and
`read` (always with `--state`, asking `incremental` of every stream), and caches records in
DuckDB. Prints one JSON object: how many records the first and the second read processed (the
second starts from the state PyAirbyte stored) and how many rows per stream the cache holds.

    python pyairbyte_read.py BINARY BASE_URL START_DATE CACHE_DIR
"""

import json
import os
import sys

os.environ.setdefault("AIRBYTE_OFFLINE_MODE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import airbyte as ab  # noqa: E402

binary, base_url, start_date, cache_dir = sys.argv[1:5]
source = ab.get_source(
    "source-postmark",
    # window_lag_seconds 0: the fake's newest rows (opens, clicks) lie within the default
    # 5-minute lag of the real clock; the test compares with every row of the truth.
    config={"server_token": "fake-server-token", "base_url": base_url, "start_date": start_date,
            "window_lag_seconds": 0},
    local_executable=binary,
    streams="*",
)
source.check()
cache = ab.new_local_cache(cache_name="postmark", cache_dir=cache_dir)
out = {}
for run in ("first", "second"):
    result = source.read(cache=cache)
    out[run + "_processed"] = result.processed_records
# Records are deduplicated on the primary key in the cache: one row per key.
out["cached"] = {name: len(cache[name].to_pandas()) for name in source.get_selected_streams()}
print(json.dumps(out))
