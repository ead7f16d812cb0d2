"""Datasets: the built-in default, CSV and Parquet under the data dir, the fixed split, the fingerprint,
and bad data refused with a DataError naming the field before any trial or MLflow run exists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from seedcore.datasets import BUILTIN_FEATURES, BUILTIN_LABEL, builtin_frame, load_dataset
from seedcore.errors import DataError
from seedcore.tuning import run_sweep

pytestmark = pytest.mark.unit


def user_frame(n_rows: int = 200, seed: int = 3) -> pd.DataFrame:
    """A small user table: three numeric features, a text column, a 0/1 label named `churned`."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.integers(18, 90, n_rows).astype(float), "usage": rng.normal(size=n_rows),
                          "tenure": rng.integers(0, 120, n_rows), "region": rng.choice(["n", "s"], n_rows)})
    frame["churned"] = (frame["usage"] + rng.normal(scale=0.5, size=n_rows) > 0).astype(int)
    return frame


def write(frame: pd.DataFrame, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def splits(ds):
    return [ds.x_train, ds.y_train, ds.x_valid, ds.y_valid, ds.x_holdout, ds.y_holdout]


def test_builtin_dataset_by_default(settings):
    ds = load_dataset(settings.data_dir)
    assert ds.source == "builtin" and ds.label_column == BUILTIN_LABEL == "target"
    assert list(ds.feature_names) == BUILTIN_FEATURES == [f"f{i}" for i in range(10)]
    assert ds.x_train.shape[1] == ds.x_valid.shape[1] == ds.x_holdout.shape[1] == 10
    assert (len(ds.y_train), len(ds.y_valid), len(ds.y_holdout)) == (1000, 600, 400)  # under 10,000 rows: 50/30/20
    assert set(np.unique(ds.y_train)) == {0.0, 1.0}
    assert load_dataset(settings.data_dir, "builtin").fingerprint == ds.fingerprint


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_user_table_with_label_and_feature_columns(settings, suffix):
    frame = user_frame()
    write(frame, settings.data_dir / "tables" / f"users{suffix}")
    source = f"tables/users{suffix}"

    write(frame.drop(columns="region"), settings.data_dir / "tables" / f"numeric{suffix}")
    every = load_dataset(settings.data_dir, f"tables/numeric{suffix}", "churned")
    assert list(every.feature_names) == ["age", "usage", "tenure"]  # every column but the label
    # The text column `region` is fine when feature_columns leave it out.
    chosen = load_dataset(settings.data_dir, source, "churned", ["usage", "age"])
    assert list(chosen.feature_names) == ["usage", "age"]
    assert chosen.label_column == "churned"
    assert chosen.source == str((settings.data_dir / source).resolve())
    assert chosen.n_rows == 200 and chosen.x_train.shape == (100, 2)  # small data: 50% train
    # Each row keeps its own features and label after the shuffle.
    x = np.vstack([chosen.x_train, chosen.x_valid, chosen.x_holdout])
    y = np.concatenate([chosen.y_train, chosen.y_valid, chosen.y_holdout])
    expected = frame[["usage", "age", "churned"]].to_numpy(dtype=np.float32)
    got = np.column_stack([x, y])
    assert np.array_equal(got[np.lexsort(got.T[::-1])], expected[np.lexsort(expected.T[::-1])])


def test_csv_without_feature_columns_refuses_its_text_column(settings):
    write(user_frame(), settings.data_dir / "users.csv")
    with pytest.raises(DataError) as err:
        load_dataset(settings.data_dir, "users.csv", "churned")
    assert err.value.field == "feature_columns" and "region" in err.value.message


def test_csv_and_parquet_of_the_same_table_agree(settings):
    frame = user_frame().drop(columns="region")
    write(frame, settings.data_dir / "a.csv")
    write(frame, settings.data_dir / "a.parquet")
    from_csv = load_dataset(settings.data_dir, "a.csv", "churned")
    from_parquet = load_dataset(settings.data_dir, "a.parquet", "churned")
    for left, right in zip(splits(from_csv), splits(from_parquet)):
        assert np.array_equal(left, right)


@pytest.mark.parametrize("source", [None, "users.csv"])
def test_fixed_seed_split_is_the_same_twice(settings, source):
    write(user_frame().drop(columns="region"), settings.data_dir / "users.csv")
    label = "churned" if source else None
    first, second = load_dataset(settings.data_dir, source, label), load_dataset(settings.data_dir, source, label)
    for left, right in zip(splits(first), splits(second)):
        assert np.array_equal(left, right)
    assert first.fingerprint == second.fingerprint
    # A split, not a copy: the three parts are disjoint rows and cover the table.
    assert len(first.y_train) + len(first.y_valid) + len(first.y_holdout) == first.n_rows
    assert not np.array_equal(first.x_train[: len(first.y_valid)], first.x_valid)


def test_fingerprint_follows_the_content(settings):
    frame = user_frame().drop(columns="region")
    path = settings.data_dir / "users.csv"
    write(frame, path)
    original = load_dataset(settings.data_dir, "users.csv", "churned").fingerprint
    assert len(original) == 64

    changed = frame.copy()
    changed.loc[7, "usage"] += 1.0
    write(changed, path)
    assert load_dataset(settings.data_dir, "users.csv", "churned").fingerprint != original

    changed_label = frame.copy()
    changed_label.loc[3, "churned"] = 1 - changed_label.loc[3, "churned"]
    write(changed_label, path)
    assert load_dataset(settings.data_dir, "users.csv", "churned").fingerprint != original

    write(frame, path)  # the same content again: the same fingerprint
    assert load_dataset(settings.data_dir, "users.csv", "churned").fingerprint == original
    assert load_dataset(settings.data_dir).fingerprint != original


def bad_table(settings, name: str, frame: pd.DataFrame) -> str:
    write(frame, settings.data_dir / name)
    return name


def _outside_file(settings) -> str:
    outside = settings.data_dir.parent / "outside.csv"
    write(user_frame().drop(columns="region"), outside)
    return str(outside)


def _dotdot(settings) -> str:
    _outside_file(settings)
    return "../outside.csv"


def _symlink_out(settings) -> str:
    link = settings.data_dir / "link.csv"
    link.symlink_to(_outside_file(settings))
    return "link.csv"


def _symlinked_dir_out(settings) -> str:
    _outside_file(settings)
    (settings.data_dir / "shared").symlink_to(settings.data_dir.parent, target_is_directory=True)
    return "shared/outside.csv"


def _empty(settings) -> str:
    (settings.data_dir / "empty.csv").write_bytes(b"")
    return "empty.csv"


def _header_only(settings) -> str:
    (settings.data_dir / "header.csv").write_text("usage,churned\n")
    return "header.csv"


def _one_class(settings) -> str:
    frame = user_frame().drop(columns="region")
    frame["churned"] = 1
    return bad_table(settings, "one_class.csv", frame)


def _non_numeric(settings) -> str:
    return bad_table(settings, "text.parquet", user_frame())


def _labels_not_binary(settings) -> str:
    frame = user_frame().drop(columns="region")
    frame["churned"] = frame.index % 3
    return bad_table(settings, "three.csv", frame)


def _users(settings) -> str:
    return bad_table(settings, "users.csv", user_frame().drop(columns="region"))


def _txt(settings) -> str:
    (settings.data_dir / "users.txt").write_text("usage,churned\n1,0\n")
    return "users.txt"


def _tiny(settings) -> str:
    return bad_table(settings, "tiny.csv", user_frame(n_rows=20))


# (make the source, label_column, feature_columns, expected field)
BAD_DATA = {
    "missing-label-column": (_users, "label", None, "label_column"),
    "no-label-column-given": (_users, None, None, "label_column"),
    "label-is-a-feature": (_users, "churned", ["usage", "churned"], "feature_columns"),
    "unknown-feature-column": (_users, "churned", ["usage", "nope"], "feature_columns"),
    "non-numeric-feature": (_non_numeric, "churned", None, "feature_columns"),
    "one-class-only": (_one_class, "churned", None, "label_column"),
    "labels-not-0-1": (_labels_not_binary, "churned", None, "label_column"),
    "builtin-unknown-label": (lambda s: None, "label", None, "label_column"),
    "dotdot-outside": (_dotdot, "churned", None, "data_source"),
    "absolute-outside": (_outside_file, "churned", None, "data_source"),
    "symlink-outside": (_symlink_out, "churned", None, "data_source"),
    "symlinked-dir-outside": (_symlinked_dir_out, "churned", None, "data_source"),
    "http-url": (lambda s: "http://example.com/users.csv", "churned", None, "data_source"),
    "s3-url": (lambda s: "s3://bucket/users.parquet", "churned", None, "data_source"),
    "missing-file": (lambda s: "nope.csv", "churned", None, "data_source"),
    "directory": (lambda s: "models", "churned", None, "data_source"),
    "empty-file": (_empty, "churned", None, "data_source"),
    "header-only": (_header_only, "churned", None, "data_source"),
    "not-csv-or-parquet": (_txt, "churned", None, "data_source"),
    "too-few-rows": (_tiny, "churned", ["usage"], "data_source"),
}


@pytest.mark.parametrize("make, label, features, field", list(BAD_DATA.values()), ids=list(BAD_DATA))
def test_bad_data_is_refused_before_any_run(settings, make, label, features, field):
    source = make(settings)
    with pytest.raises(DataError) as err:
        load_dataset(settings.data_dir, source, label, features)
    assert err.value.field == field and err.value.status_code == 400

    with pytest.raises(DataError) as err:
        run_sweep(settings, space_type="conservative", config_type="conservative", experiment_name="bad_data",
                  data_source=source, label_column=label, feature_columns=features)
    assert err.value.field == field
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    assert client.get_experiment_by_name("bad_data") is None
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments) == []
    assert not settings.ray_results_dir.exists()  # no Tune experiment was started either


def test_builtin_frame_is_deterministic():
    assert builtin_frame().equals(builtin_frame())
    assert not builtin_frame(seed=8).equals(builtin_frame())
