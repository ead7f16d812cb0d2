"""The batch peer, in a process of its own (only what it needs imported): a one-off scoring job."""

from __future__ import annotations

import time


def peer_process(conn, model_path: str, data: str, out: str) -> None:
    """Load the model, say ready, wait for go; then read, predict and write, and send the seconds it took."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import xgboost as xgb

    booster = xgb.Booster()
    with open(model_path, "rb") as f:
        booster.load_model(bytearray(f.read()))  # UBJ bytes; the .xgb suffix names no format
    conn.send("ready")
    conn.recv()
    started = time.perf_counter()
    table = pq.read_table(data)
    prediction = booster.inplace_predict(table.to_pandas())
    pq.write_table(pa.table({"row": np.arange(len(prediction), dtype=np.int64),
                             "prediction": prediction.astype(np.float32)}), out)
    conn.send({"seconds": time.perf_counter() - started, "output": out})
