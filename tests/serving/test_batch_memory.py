"""batch_predict streams: on a file far larger than one chunk, the serving process's peak RSS grows by
a few chunks' worth, not by the file. Measured in a fresh child process as its RSS high-water mark
(VmHWM, reset just before), next to reading the same file whole in that child."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from _serving import add_version
from seedcore.datasets import BUILTIN_FEATURES
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.e2e

CHUNK_ROWS = 100_000  # the default Settings.batch_chunk_rows
MB = 1024 * 1024

CHILD = r"""
import json, sys
from seedcore.api import create_app
from seedcore.config import Settings
from seedcore.data_files import read_table, resolve_data_path
from seedcore.services import services_of

def kb(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(key + ":"))

def measure(call):
    # Reset this process's RSS high-water mark (ru_maxrss would also count the parent's, from exec)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = kb("VmRSS")
    result = call()
    return result, kb("VmHWM") - before

settings = Settings.from_env()
app = create_app(settings, role="serve")
client = app.test_client()
warm = client.post("/xgboost/batch_predict", json={"data_source": sys.argv[2]})  # every code path once
assert warm.status_code == 200, warm.get_json()
response, growth = measure(lambda: client.post("/xgboost/batch_predict", json={"data_source": sys.argv[1]}))
services_of(app).stop()
# the reference, measured the same way: the same file read whole
_, whole = measure(lambda: read_table(resolve_data_path(settings.data_dir, sys.argv[1])))
print(json.dumps({"status": response.status_code, "body": response.get_json(), "growth": growth, "whole": whole}))
"""


def _write_table(path, n_rows: int, block: int = 100_000, seed: int = 0) -> None:
    """A table of `n_rows` x f0..f9 written block by block (the test itself never holds it whole)."""
    rng = np.random.default_rng(seed)
    schema = pa.schema([(name, pa.float64()) for name in BUILTIN_FEATURES])
    writer = pq.ParquetWriter(path, schema) if path.suffix == ".parquet" else pacsv.CSVWriter(path, schema)
    with writer:
        for start in range(0, n_rows, block):
            size = min(block, n_rows - start)
            writer.write_table(pa.table(list(rng.normal(size=(len(BUILTIN_FEATURES), size))), schema=schema))


def _run_child(settings, source: str, warm: str) -> dict:
    env = {**os.environ, "SEEDCORE_DATA_DIR": str(settings.data_dir), "SEEDCORE_MLRUNS_DIR": str(settings.mlruns_dir),
           "SEEDCORE_BATCH_CHUNK_ROWS": str(CHUNK_ROWS), "SEEDCORE_POLL_INTERVAL_S": "600"}
    done = subprocess.run([sys.executable, "-c", CHILD, source, warm], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name,n_rows", [("big.parquet", 2_000_000), ("big.csv", 2_000_000)])
def test_peak_memory_stays_near_one_chunk(settings, name, n_rows):
    version, _ = add_version(settings, Registry(settings))
    _write_table(settings.data_dir / name, n_rows)
    _write_table(settings.data_dir / f"warm{settings.data_dir.joinpath(name).suffix}", 3 * CHUNK_ROWS, seed=1)
    result = _run_child(settings, name, f"warm{settings.data_dir.joinpath(name).suffix}")
    assert result["status"] == 200, result["body"]
    body = result["body"]
    assert body["rows"] == n_rows and body["model_version"] == version
    assert body["chunks"] == -(-n_rows // CHUNK_ROWS)
    assert pq.ParquetFile(body["output_path"]).metadata.num_rows == n_rows

    file_values = n_rows * len(BUILTIN_FEATURES) * 8  # the file's numbers as float64
    chunk_values = CHUNK_ROWS * len(BUILTIN_FEATURES) * 8
    growth, whole = result["growth"], result["whole"]
    print(f"{name}: {n_rows} rows, values {file_values / MB:.0f} MB, chunk {chunk_values / MB:.1f} MB, "
          f"peak RSS growth {growth / MB:.1f} MB streamed, {whole / MB:.1f} MB read whole")
    assert file_values >= 20 * chunk_values  # the file is far larger than a chunk
    assert whole > file_values  # the reference really holds the file
    # generous: measured here, about 2 chunks' worth for Parquet and 6 to 11 for CSV (pandas'
    # parser buffers, allocator slack), the same whatever the file size
    assert growth < 16 * chunk_values
    assert growth < whole / 5
