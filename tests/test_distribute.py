"""fl layers under tf.distribute: MirroredStrategy on two logical CPUs and two MultiWorker
processes on loopback, each in fresh processes, against the same training on one device."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import distributed_training
import fusedlayers as fl
from conftest import assert_close

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_training.py")
TIMEOUT_S = 240


def _env(**extra):
    """This environment, with the fusedlayers under test importable from the child."""
    package_parent = os.path.dirname(os.path.dirname(fl.__file__))
    pythonpath = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _check_result(path, expected_replicas, expected_weights):
    result = np.load(path)
    assert int(result["replicas"]) == expected_replicas
    assert set(result["variable_types"]) == {"MirroredVariable"}
    assert len(expected_weights) == len(result["variable_types"])
    for i, expected in enumerate(expected_weights):
        assert_close(result[f"w{i}"], expected, rtol=1e-5)


@pytest.fixture(scope="module")
def one_device_weights():
    model = distributed_training.train(tf.distribute.get_strategy())
    return [v.numpy() for v in model.variables]


def test_mirrored_strategy_matches_one_device(tmp_path, one_device_weights):
    out = tmp_path / "mirrored.npz"
    proc = subprocess.run([sys.executable, SCRIPT, "mirrored", str(out)], env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    _check_result(out, 2, one_device_weights)


def test_multi_worker_mirrored_strategy_matches_one_device(tmp_path, one_device_weights):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    outs = [tmp_path / f"worker{i}.npz" for i in range(2)]
    workers = []
    try:
        for index, out in enumerate(outs):
            tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            workers.append(subprocess.Popen(
                [sys.executable, SCRIPT, "worker", str(out)],
                env=_env(TF_CONFIG=json.dumps(tf_config)),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            ))
        logs = [w.communicate(timeout=TIMEOUT_S)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for w, log in zip(workers, logs):
        assert w.returncode == 0, log[-4000:]
    for out in outs:
        _check_result(out, 2, one_device_weights)
