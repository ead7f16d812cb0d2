"""seedcore._xgboost: a process of ours loads XGBoost without scikit-learn, and scikit-learn stays importable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # fresh interpreters: a process's first import of XGBoost is the subject

TRAIN = ("booster = xgboost.train({'nthread': 1}, xgboost.DMatrix([[0.0], [1.0]], label=[0, 1]), num_boost_round=2)\n"
         "rounds = booster.num_boosted_rounds()\n")


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_module_of_ours_loads_xgboost_without_scikit_learn_which_stays_importable():
    seen = _run("import json, sys\n"
                "import seedcore.promotion.service  # a server's and `seedcore promote`'s import of XGBoost\n"
                "import xgboost\n" + TRAIN +
                "loaded = ['sklearn' in sys.modules, 'scipy.stats' in sys.modules]\n"
                "import sklearn.metrics\n"
                "auc = sklearn.metrics.roc_auc_score([0, 1], [0.2, 0.8])\n"
                "print(json.dumps({'loaded': loaded, 'rounds': rounds, 'auc': auc}))\n")
    assert seen == {"loaded": [False, False], "rounds": 2, "auc": 1.0}


def test_a_process_that_loaded_scikit_learn_first_gets_xgboosts_estimators():
    seen = _run("import json, sklearn.base\n"
                "import seedcore._xgboost\n"
                "import xgboost\n" + TRAIN +
                "print(json.dumps({'estimator': issubclass(xgboost.XGBClassifier, sklearn.base.BaseEstimator), "
                "'rounds': rounds}))\n")
    assert seen == {"estimator": True, "rounds": 2}
