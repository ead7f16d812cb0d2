"""The user guide, run as written against `seedcore up` installed the way a user installs it.

Every `curl` of the guide's bash blocks (and of the README's quick start) runs through bash with real curl,
only `localhost:8000` replaced by the server's address; curl's config file (CURL_HOME) adds `--silent
--show-error --write-out` so the status code can be read without changing the command. The guide's
Scheduled Tuning and Performance Monitoring snippets run in the installed venv's Python. Lines of the guide
that cannot run as written here are listed once, in RUN_INSTEAD, with what README.md says to run instead; each
of those runs too. The same server takes a one-trial `seedcore tune` with each search algorithm.

The default and aggressive presets ask for 50 and 100 trials; the server runs them with the documented
SEEDCORE_PRESET_MAX_TRIALS, which trims a preset's trials (the conservative preset keeps its 5).
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
import requests

from _installed import ROOT, installed  # noqa: F401  (fixture)
from _lifecycle import Platform, clean_env, ctrl_c, start
from bench._ports import free_port
from seedcore.request_models import PRESETS
from seedcore.tuning.spaces import SEARCH_ALGS

pytestmark = pytest.mark.e2e

# The guide we honour lives beside the repository (../shared/spec); spec/ holds the copy a clone carries, so the
# test runs wherever the repository is cloned. Where both are present they must be the same text.
SHARED_GUIDE = ROOT.parent / "shared" / "spec" / "HYPERPARAMETER_TUNING_GUIDE.md"
GUIDE = ROOT / "spec" / "HYPERPARAMETER_TUNING_GUIDE.md"
README = ROOT / "README.md"
README_SECTION = "## The guide's commands here"
PRESET_MAX_TRIALS = 5  # SEEDCORE_PRESET_MAX_TRIALS for the server: the conservative preset's own number
GUIDE_ADDRESS = "localhost:8000"
SWEEP_TIMEOUT_S = 900
CURLRC = 'silent\nshow-error\nwrite-out = "\\n%{http_code}"\n'
SNIPPETS = ("Scheduled Tuning", "Performance Monitoring")  # the guide's headings of the snippets we run


# -- reading the guide ---------------------------------------------------------------------------
@dataclass
class Block:
    lang: str
    body: str
    heading: str  # the last heading before the block
    label: str  # the last non-empty line before the block, e.g. "**Expected Response:**"


def code_blocks(text: str) -> list[Block]:
    found, heading, label, lines, i = [], "", "", text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            found.append(Block(fence.group(1), "\n".join(lines[i + 1:end]), heading, label))
            label, i = "", end + 1
            continue
        if lines[i].startswith("#"):
            heading = lines[i].lstrip("#").strip()
        if lines[i].strip():
            label = lines[i].strip()
        i += 1
    return found


def shell_commands(body: str) -> list[str]:
    """The commands of a bash block, comments left out: a command goes on over a trailing backslash and
    over a quoted string's new lines (the guide's `-d '{ ... }'` bodies)."""
    found, current = [], []
    for line in body.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current.append(line)
        text = "\n".join(current)
        if line.rstrip().endswith("\\"):
            continue
        try:
            shlex.split(text)
        except ValueError:  # a quote still open
            continue
        found.append(text.strip())
        current = []
    assert not current, f"unterminated command: {current}"
    return found


def one_line(command: str) -> str:
    """A command on one line, whitespace collapsed: how RUN_INSTEAD and the README name it."""
    return " ".join(command.replace("\\\n", " ").split())


def bash_commands(path: Path) -> list[str]:
    return [c for b in code_blocks(path.read_text()) if b.lang == "bash" for c in shell_commands(b.body)]


def is_curl(command: str) -> bool:
    return command.startswith("curl ")


def curl_request(command: str) -> tuple[str, str, dict | None]:
    """(method, path, JSON body or None) of a curl command."""
    tokens = shlex.split(command)
    body = json.loads(tokens[tokens.index("-d") + 1]) if "-d" in tokens else None
    method = tokens[tokens.index("-X") + 1] if "-X" in tokens else ("POST" if body is not None else "GET")
    url = next(t for t in tokens if t.startswith("http"))
    return method, urlsplit(url).path, body


@functools.cache
def guide_responses() -> dict[tuple[str, str], list[dict]]:
    """The guide's example responses by endpoint: a JSON block labelled `Response:` belongs to the endpoint
    its heading names (`### POST /xgboost/tune`), else to the curl just before it."""
    found: dict[tuple[str, str], list[dict]] = {}
    last = None
    for block in code_blocks(GUIDE.read_text()):
        if block.lang == "bash":
            curls = [c for c in shell_commands(block.body) if is_curl(c) and one_line(c) not in RUN_INSTEAD]
            last = curl_request(curls[-1])[:2] if curls else last
        elif block.lang == "json" and block.label.endswith("Response:**"):
            named = re.match(r"(GET|POST) `(/\S+)`", block.heading)
            found.setdefault(named.groups() if named else last, []).append(json.loads(block.body))
    return found


def guide_flashbulb_event() -> dict:
    (block,) = [b for b in code_blocks(GUIDE.read_text()) if b.lang == "json" and b.heading == "Flashbulb Memory"]
    return json.loads(block.body)


def guide_trials() -> dict[str, int]:
    """Each preset's number of trials as the guide's "Search Space Configurations" states it."""
    found = dict(re.findall(r"### (\w+) Space\n(?:- .*\n)*?- \*\*Trials\*\*: (\d+)", GUIDE.read_text()))
    return {name.lower(): int(n) for name, n in found.items()}


def guide_snippet(heading: str) -> str:
    (block,) = [b for b in code_blocks(GUIDE.read_text()) if b.lang == "python" and b.heading == heading]
    return block.body


def key_paths(value, prefix: str = "") -> set[str]:
    if not isinstance(value, dict):
        return set()
    paths = set()
    for key, inner in value.items():
        paths.add(prefix + key)
        paths |= key_paths(inner, f"{prefix}{key}.")
    return paths


# -- the server --------------------------------------------------------------------------------
@dataclass
class Server:
    platform: Platform
    home: Path  # where `seedcore up` runs: data/ and mlruns/ are here
    port: int
    env: dict  # the user's shell: the venv activated, curl's config

    @property
    def url(self) -> str:
        return self.platform.url

    @property
    def data(self) -> Path:
        return self.home / "data"

    def here(self, command: str) -> str:
        return command.replace(GUIDE_ADDRESS, f"127.0.0.1:{self.port}")

    def shell(self, command: str, timeout: float = SWEEP_TIMEOUT_S) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", self.here(command)], cwd=self.home, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def curl(self, command: str) -> tuple[int, dict]:
        """Run a curl command; its status code and JSON answer."""
        done = self.shell(command)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        text, _, code = done.stdout.rpartition("\n")
        assert 200 <= int(code) < 300, f"{command}\n{code} {text[:3000]}"
        return int(code), json.loads(text)

    def jobs(self, experiment_name: str) -> list[dict]:
        answer = requests.get(f"{self.url}/xgboost/tune/jobs", params={"limit": 100}, timeout=30).json()
        return [job for job in answer["items"] if job["experiment_name"] == experiment_name]


@pytest.fixture(scope="module")
def server(installed, tmp_path_factory):
    """`seedcore up` of the plain install in a directory of its own, on free ports; Ctrl-C at the end."""
    assert shutil.which("curl"), "the guide's commands need curl (apt-get install -y curl)"
    home = tmp_path_factory.mktemp("guide")
    port, ui_port, dashboard_port = free_port(), free_port(), free_port()
    env = installed.env(clean_env(home, SEEDCORE_PORT=str(port), SEEDCORE_MLFLOW_UI_PORT=str(ui_port),
                                  SEEDCORE_RAY_DASHBOARD_PORT=str(dashboard_port),
                                  SEEDCORE_PRESET_MAX_TRIALS=str(PRESET_MAX_TRIALS)))
    curl_home = home / "curl"
    curl_home.mkdir()
    (curl_home / ".curlrc").write_text(CURLRC)
    platform = start(["up"], home, port, env, seedcore=installed.seedcore, cwd=home)
    try:
        platform.wait_healthy(timeout=300)
        yield Server(platform, home, port, {**env, "CURL_HOME": str(curl_home)})
        platform.remember_processes()
        ctrl_c(platform)  # Ctrl-C at the terminal
    finally:
        platform.stop()


# -- what the answers must hold ------------------------------------------------------------------
def check_sweep(server: Server, body: dict, answer: dict) -> None:
    """A synchronous sweep's answer: the guide's fields, for the preset asked (trimmed as configured)."""
    for shape in guide_responses()[("POST", "/xgboost/tune")]:
        assert key_paths(shape) <= key_paths(answer), key_paths(shape) - key_paths(answer)
    assert answer["status"] == "success"
    assert answer["experiment_name"] == body.get("experiment_name", "xgboost_tuning")
    preset = body.get("config_type", "default")
    assert answer["total_trials"] == min(guide_trials()[preset], PRESET_MAX_TRIALS)
    best = answer["best_trial"]
    assert best["trial_id"] and 0.5 < best["auc"] <= 1 and best["logloss"] > 0, best
    assert Path(answer["experiment_path"]).is_dir()
    promotion = answer["promotion"]
    assert promotion["status"] in ("success", "rejected"), promotion  # the champion gate may keep the champion
    if promotion["status"] == "success":
        assert Path(promotion["blessed_path"]).is_file() and Path(promotion["metadata_path"]).is_file()
        assert Path(promotion["blessed_path"]).is_relative_to(server.data / "models")


def check_answer(server: Server, command: str, answer: dict) -> None:
    method, path, body = curl_request(server.here(command))
    for shape in guide_responses().get((method, path), []):
        assert key_paths(shape) <= key_paths(answer), (path, key_paths(shape) - key_paths(answer))
    if (method, path) == ("POST", "/xgboost/tune"):
        check_sweep(server, body or {}, answer)
    elif (method, path) == ("POST", "/xgboost/refresh_model"):
        assert answer["status"] == "success" and answer["message"] and answer["current_model_path"], answer
    elif (method, path) == ("GET", "/xgboost/model_info"):
        assert answer["status"] == "success" and 0.5 < answer["metrics"]["auc"] <= 1, answer
    elif (method, path) == ("GET", "/xgboost/list_models"):
        assert answer["status"] == "success" and answer["models"] and answer["served_version"], answer
    elif (method, path) == ("POST", "/xgboost/predict"):
        assert answer["status"] == "success" and 0 <= answer["prediction"] <= 1 and answer["rows"] == 1, answer
    elif (method, path) == ("GET", "/mfb/incidents"):
        tuned = [i for i in answer["items"] if i["event_type"] == "model_tuning_completed"]
        assert tuned, answer
        expected = key_paths(guide_flashbulb_event())
        assert all(expected <= key_paths(i) | key_paths(i["payload"]) for i in tuned), \
            expected - key_paths(tuned[0]) - key_paths(tuned[0]["payload"])
    else:
        raise AssertionError(f"no check for {method} {path}: add one")


# -- lines of the guide that cannot run as written, and what to run instead ------------------------
def check_dashboard(server: Server, done: subprocess.CompletedProcess) -> None:
    text, _, code = done.stdout.rpartition("\n")
    assert code == "200", done.stdout
    dashboard = json.loads(text)["ray_dashboard"]
    assert dashboard and requests.get(dashboard, timeout=30).status_code == 200, dashboard


def check_lines(*wanted: str):
    def check(server: Server, done: subprocess.CompletedProcess) -> None:
        assert done.returncode == 0 and all(w.lower() in done.stdout.lower() for w in wanted), done
    return check


def check_tail(server: Server, done: subprocess.CompletedProcess) -> None:
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and 0 < len(lines) <= 100 and any("seedcore" in line for line in lines), done


def check_ray_status(server: Server, done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0 and "Active:" in done.stdout and "CPU" in done.stdout, done


def check_models_found(server: Server, done: subprocess.CompletedProcess) -> None:
    found = done.stdout.split()
    assert done.returncode == 0 and found and all(path.endswith(".xgb") for path in found), done
    assert all((server.home / path).is_file() for path in found)


def check_batch(server: Server, done: subprocess.CompletedProcess) -> None:
    text, _, code = done.stdout.rpartition("\n")
    assert code == "200", done.stdout
    answer = json.loads(text)
    assert answer["status"] == "success" and answer["rows"] == len(pd.read_csv(server.data / "validation.csv"))
    predicted = pd.read_parquet(answer["output_path"])
    assert len(predicted) == answer["rows"] and predicted["prediction"].between(0, 1).all()


def check_schedule(server: Server, done: subprocess.CompletedProcess) -> None:
    text, _, code = done.stdout.rpartition("\n")
    assert code == "201", done.stdout
    schedule = json.loads(text)
    due = datetime.fromisoformat(schedule["next_run_at"])
    assert schedule["enabled"] and (due.weekday(), due.hour, due.minute) == (0, 2, 0), schedule  # Monday 02:00
    assert requests.delete(f"{server.url}/xgboost/schedules/{schedule['id']}", timeout=30).status_code == 200


FEATURES = [f"f{i}" for i in range(10)]
RUN_INSTEAD = {
    "open http://localhost:8265": ("curl http://localhost:8000/health", check_dashboard),
    "docker logs seedcore-ray-head | grep -i tune": ("grep -i tune data/logs/seedcore.log",
                                                     check_lines("tune sweep succeeded")),
    'docker logs seedcore-ray-head | grep -i "model promoted"': ('grep -i "model promoted" data/logs/seedcore.log',
                                                                check_lines("model promoted")),
    "docker logs seedcore-ray-head --tail 100": ("tail -n 100 data/logs/seedcore.log", check_tail),
    "docker exec seedcore-ray-head ray status": ("seedcore ray status", check_ray_status),
    'docker exec seedcore-ray-head python3 -c "import ray; print(ray.is_initialized())"':
        ("seedcore ray status", check_ray_status),
    'docker exec seedcore-ray-head python3 -c "import ray; print(ray.available_resources())"':
        ("seedcore ray status", check_ray_status),
    "ls -la /tmp/ray_results/": ("ls -la data/ray_results/", check_lines("job_")),  # a job's experiment: job_<id>
    "ls -la /data/models/": ("ls -la data/models/", check_lines("utility_risk_model_latest")),
    "ls -la /data/models/utility_risk_model_latest/": ("ls -la data/models/utility_risk_model_latest/",
                                                       check_lines("model.xgb", "tuning_metadata.json")),
    'find /data/models -name "*.xgb" -type f': ('find data/models -name "*.xgb" -type f', check_models_found),
    """curl -X POST http://localhost:8000/xgboost/batch_predict -d '{"data_source": "/data/validation.csv", """
    """"feature_columns": ["f1", "f2", ...]}'""":
        ("""curl -X POST http://localhost:8000/xgboost/batch_predict -d '{"data_source": "validation.csv", """
         f""""feature_columns": {json.dumps(FEATURES)}}}'""", check_batch),
    # Scheduled Tuning's loop never ends: the snippet's test calls weekly_tuning() once instead, and the
    # server keeps the same schedule itself.
    "while True:": ("""curl -X POST http://localhost:8000/xgboost/schedules -H "Content-Type: application/json" """
                    """-d '{"name": "weekly_tuning", "cron": "0 2 * * 1", "tune": {"space_type": "default", """
                    """"experiment_name": "weekly_tuning"}}'""", check_schedule),
}


# -- the tests -----------------------------------------------------------------------------------
def test_every_guide_line_runs_as_written_or_has_its_equivalent_in_the_readme():
    commands = [one_line(c) for c in bash_commands(GUIDE)]
    not_as_written = {c for c in commands if not is_curl(c)} | {c for c in commands if c in RUN_INSTEAD}
    python_lines = {line.strip() for b in code_blocks(GUIDE.read_text()) if b.heading in SNIPPETS
                    for line in b.body.splitlines()}
    assert not_as_written | {"while True:"} == set(RUN_INSTEAD)  # nothing missing, nothing stale
    assert "while True:" in python_lines
    section = one_line(README.read_text().split(README_SECTION, 1)[1].split("\n## ", 1)[0])
    for line, (instead, _) in RUN_INSTEAD.items():
        assert f"`{line}`" in section, f"README's {README_SECTION!r} does not name {line!r}"
        assert f"`{instead}`" in section, f"README's {README_SECTION!r} does not say to run {instead!r}"


def test_every_curl_of_the_guide_runs_as_written(server):
    curls = [c for c in bash_commands(GUIDE) if is_curl(c) and one_line(c) not in RUN_INSTEAD]
    for command in curls:  # in the guide's order: the first sweep comes before the calls that need a model
        _, answer = server.curl(command)
        check_answer(server, command, answer)
    print(f"\n{len(curls)} curls of the guide run as written")


def test_the_readme_quick_start_runs_as_written(server):
    (block,) = [b for b in code_blocks(README.read_text()) if b.heading.startswith("Quick start")
                and b.lang == "bash"]
    curls = shell_commands(block.body)
    assert len(curls) >= 4 and all(is_curl(c) for c in curls)
    for command in curls:
        _, answer = server.curl(command)
        check_answer(server, command, answer)
    print(f"\n{len(curls)} curls of the README's quick start run as written")


def guide_curl_presets() -> set[str]:
    """The presets (config_type) the guide's own tuning curls run."""
    return {(curl_request(c)[2] or {}).get("config_type", "default") for c in bash_commands(GUIDE)
            if is_curl(c) and one_line(c) not in RUN_INSTEAD and curl_request(c)[:2] == ("POST", "/xgboost/tune")}


def test_every_preset_runs_to_success(server):
    """The presets the guide's curls run are checked there (conservative, default); the others here."""
    for preset in [p for p in PRESETS if p not in guide_curl_presets()]:
        body = {"space_type": preset, "config_type": preset, "experiment_name": f"preset_{preset}"}
        answer = requests.post(f"{server.url}/xgboost/tune", json=body, timeout=SWEEP_TIMEOUT_S)
        assert answer.status_code == 200, answer.text
        check_sweep(server, body, answer.json())
        assert answer.json()["tune_config"]["num_samples"] == min(guide_trials()[preset], PRESET_MAX_TRIALS)


def run_snippet(installed, server: Server, heading: str, call: str, tmp_path: Path, report: str = "") -> str:
    """The guide's snippet under `heading`, as written (its address ours) up to the loop RUN_INSTEAD names,
    then `call`; in the installed venv's Python with the snippet's own imports (schedule) beside it."""
    snippet = server.here(guide_snippet(heading))
    snippet = snippet.split("\nwhile True:", 1)[0]
    deps = tmp_path / "snippet-deps"
    if "import schedule" in snippet:
        subprocess.run([str(installed.python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--target", str(deps), "schedule"], check=True, capture_output=True, timeout=600,
                       env=installed.env())
    script = tmp_path / "snippet.py"
    script.write_text("import requests  # the guide's snippets use requests without importing it\n"
                      f"{snippet}\n{call}\n{report}\n")
    done = subprocess.run([str(installed.python), str(script)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=SWEEP_TIMEOUT_S, env={**installed.env(), "PYTHONPATH": str(deps)})
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_the_scheduled_tuning_snippet_runs(installed, server, tmp_path):
    report = ("import json\nprint(json.dumps([[j.next_run.weekday(), j.next_run.strftime('%H:%M')] "
              "for j in schedule.get_jobs()]))")
    out = run_snippet(installed, server, "Scheduled Tuning", "weekly_tuning()", tmp_path, report)
    assert json.loads(out.splitlines()[-1]) == [[0, "02:00"]]  # what `schedule` would run: Monday 02:00
    (job,) = server.jobs("weekly_tuning")
    assert job["state"] == "succeeded" and job["result"]["status"] == "success", job
    assert job["result"]["tune_config"]["num_samples"] == min(guide_trials()["default"], PRESET_MAX_TRIALS)


def test_the_performance_monitoring_snippet_runs(installed, server, tmp_path):
    info = requests.get(f"{server.url}/xgboost/model_info", timeout=30).json()
    auc = info.get("metrics", {}).get("auc", 0.0)  # as the snippet reads it (no model yet: 0.0)
    before = len(server.jobs("performance_tuning"))
    run_snippet(installed, server, "Performance Monitoring", "check_performance()", tmp_path)
    after = server.jobs("performance_tuning")
    assert len(after) - before == (1 if auc < 0.90 else 0), (auc, after)  # the snippet's threshold
    assert all(job["state"] == "succeeded" for job in after), after
    print(f"\nmodel_info AUC {auc:.4f}: the snippet {'started a sweep' if auc < 0.90 else 'left it'}")


def test_what_the_readme_says_to_run_instead(server):
    sweep = requests.post(f"{server.url}/xgboost/tune", timeout=SWEEP_TIMEOUT_S, json={
        "space_type": "conservative", "config_type": "conservative", "experiment_name": "guide_equivalents_sweep",
        "custom_tune_config": {"num_samples": 1}})
    assert sweep.status_code == 200, sweep.text  # something for the logs, ray_results and models to show
    rows = np.random.default_rng(0).normal(size=(50, len(FEATURES)))
    pd.DataFrame(rows, columns=FEATURES).to_csv(server.data / "validation.csv", index=False)
    for line, (instead, check) in RUN_INSTEAD.items():
        done = server.shell(instead, timeout=300)
        try:
            check(server, done)
        except AssertionError as exc:
            raise AssertionError(f"{line!r} -> {instead!r}: {done.stdout[-2000:]} {done.stderr[-2000:]}") from exc
    print(f"\n{len(RUN_INSTEAD)} equivalents of guide lines run")


def test_the_guide_copy_is_the_guide():
    assert GUIDE.is_file()
    if SHARED_GUIDE.is_file():  # beside the shared guide (a developer's checkout): the copy must not drift
        assert GUIDE.read_text() == SHARED_GUIDE.read_text(), "spec/ is out of date: copy ../shared/spec here"


@pytest.mark.parametrize("alg", SEARCH_ALGS)
def test_a_one_trial_sweep_runs_with_each_search_algorithm(installed, server, alg):
    """`seedcore tune` of the plain install on the built-in data, handed to the plain install's running
    `seedcore up`: tpe and qmc need Optuna at run time, in the server."""
    done = subprocess.run([str(installed.seedcore), "tune", "--experiment-name", f"install_{alg}", "--force",
                           "--custom-config", json.dumps({"num_samples": 1, "search_alg": alg, "seed": 0})],
                          capture_output=True, text=True, timeout=600, env=server.env, cwd=server.home)
    assert done.returncode == 0, done.stderr[-4000:] + server.platform.text()[-4000:]
    assert f"handed to the server at {server.url}" in done.stderr  # the sweep ran in the server, not here
    result = json.loads(done.stdout)
    assert result["status"] == "success" and result["tune_config"]["search_alg"] == alg
    assert result["total_trials"] == 1 and result["trials"]["completed"] == 1, result["trials"]
    assert result["promotion"]["status"] == "success"
    assert Path(result["promotion"]["blessed_path"]).is_file()
    assert Path(result["promotion"]["blessed_path"]).is_relative_to(server.data)
