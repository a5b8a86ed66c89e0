"""prl.PriorClient (and Client's model calls) against a real prl_prior_server serving the
TorchScript prior exported by PyTorch in tests/data/torchscript_prior_torch2."""

import subprocess

import grpc
import numpy as np
import pytest

import prl
from conftest import TOKEN, Server, binary, source

PRIOR_DIR = "tests/data/torchscript_prior_torch2"


def reference():
    """{name: array} of reference.txt: "key rank dims... values" per line."""
    arrays = {}
    with open(source(f"{PRIOR_DIR}/reference.txt")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, rank, *rest = line.split()
            dims = [int(d) for d in rest[:int(rank)]]
            arrays[key] = np.array(rest[int(rank):], np.float32).reshape(dims)
    return arrays


@pytest.fixture(scope="module")
def prior_client(cluster):
    with prl.PriorClient(cluster.prior, token=TOKEN, timeout=30) as c:
        yield c


def test_load_list_call_and_unload_a_torchscript_prior(prior_client, client):
    path = source(f"{PRIOR_DIR}/prior.pt")
    info = prior_client.load_model("py-ts-prior", path)  # the file's bytes are sent
    assert (info.name, info.version) == ("py-ts-prior", 1)
    assert info.kind == prl.v1.PRIOR_KIND_TORCHSCRIPT
    assert (info.obs_dim, info.action_dim, info.latent_dim, info.horizon) == (4, 2, 3, 5)
    assert set(info.methods) == {"Decode", "Prior", "Forward", "Inverse"}
    with open(path, "rb") as f:
        second = prior_client.load_model("py-ts-prior", f.read(),
                                         batching={"max_batch_rows": 8, "immediate": True})
    assert second.version == 2 and second.batching.max_batch_rows == 8

    listed = [(m.name, m.version, m.loaded) for m in prior_client.models("py-ts-prior")]
    assert listed == [("py-ts-prior", 1, True), ("py-ts-prior", 2, True)]
    assert ("py-ts-prior", 2) in {(m.name, m.version) for m in client.models()}

    # the served module computes what PyTorch computed when it exported it
    ref = reference()
    actions = prior_client.decode("py-ts-prior", ref["decode.z"], ref["decode.state"])
    assert actions.dtype == np.float32 and actions.shape == (7, 5, 2)
    np.testing.assert_allclose(actions, ref["decode.actions"], atol=1e-5)
    mean, log_std = prior_client.prior("py-ts-prior", ref["prior.state"], version=1)
    np.testing.assert_allclose(mean, ref["prior.mean"], atol=1e-5)
    np.testing.assert_allclose(log_std, ref["prior.log_std"], atol=1e-5)
    a, log_det = prior_client.forward("py-ts-prior", ref["flow_forward.z"],
                                      ref["flow_forward.state"])
    np.testing.assert_allclose(a, ref["flow_forward.actions"], atol=1e-5)
    np.testing.assert_allclose(log_det, ref["flow_forward.log_det"], atol=1e-4)
    z, log_det = prior_client.inverse("py-ts-prior", ref["flow_inverse.actions"],
                                      ref["flow_inverse.state"])
    np.testing.assert_allclose(z, ref["flow_inverse.z"], atol=1e-5)
    np.testing.assert_allclose(log_det, ref["flow_inverse.log_det"], atol=1e-4)

    # wrong shapes are the server's INVALID_ARGUMENT, naming the field
    with pytest.raises(prl.PrlError) as raised:
        prior_client.decode("py-ts-prior", np.zeros((2, 7)), np.zeros((2, 4)))
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "z" in raised.value.details

    unloaded = prior_client.unload_model("py-ts-prior", 1)
    assert [(r.name, r.version) for r in unloaded] == [("py-ts-prior", 1)]
    assert [m.version for m in prior_client.models("py-ts-prior", include_unloaded=False)] == [2]
    assert [(r.name, r.version) for r in client.unload_model("py-ts-prior")] == \
        [("py-ts-prior", 2)]
    assert prior_client.models("py-ts-prior", include_unloaded=False) == []
    with pytest.raises(prl.PrlError) as raised:
        prior_client.unload_model("py-ts-prior")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND


def test_bad_models_are_refused(prior_client, tmp_path):
    with pytest.raises(prl.PrlError) as raised:
        prior_client.load_model("py-garbage", b"not a model at all")
    assert raised.value.code == grpc.StatusCode.DATA_LOSS, raised.value
    assert "not a PRL file" in raised.value.details
    with pytest.raises(prl.PrlError) as raised:
        prior_client.load_model("Bad Name", b"x")
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in raised.value.details
    with pytest.raises(prl.PrlError) as raised:
        prior_client.load_model("py-absent")  # nothing under that name in the model directory
    assert raised.value.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    with pytest.raises(ValueError, match="cannot read model file"):
        prior_client.load_model("py-x", tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="not both"):
        prior_client.load_model("py-x", b"x", server_path="/x.pt")
    with pytest.raises(ValueError, match="version"):
        prior_client.unload_model("py-x", -1)
    with pytest.raises(prl.PrlError) as raised:
        prior_client.decode("py-absent", np.zeros((1, 3)))
    assert raised.value.code == grpc.StatusCode.NOT_FOUND


def test_client_without_a_prior_server_says_so(cluster):
    with prl.Client(cluster.learner) as c:
        with pytest.raises(ValueError, match="prior_address"):
            c.models()


def test_tensors_round_trip():
    for array in (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([-1, 2**40]),
                  np.array([[0, 255]], np.uint8), np.zeros((0, 4), np.float32),
                  np.float32(2.5)):
        tensor = prl.to_tensor(array)
        back = prl.from_tensor(tensor)
        assert back.dtype == np.asarray(array).dtype and back.shape == np.shape(array)
        np.testing.assert_array_equal(back, array)
    assert prl.to_tensor(np.ones(2)).dtype == prl.v1.Tensor.DTYPE_FLOAT32
    with pytest.raises(TypeError):
        prl.to_tensor(np.ones(2, np.complex64))
    with pytest.raises(ValueError, match="bytes"):
        prl.from_tensor(prl.v1.Tensor(dtype=prl.v1.Tensor.DTYPE_FLOAT32, shape=[2], data=b"x"))


def test_tls_with_a_self_signed_certificate(tmp_path):
    """A prior server with --tls_cert/--tls_key: the client verifies it with the certificate
    as its root; a plaintext client cannot talk to it."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    server = Server("tls_prior_server", [binary("prior_server/prl_prior_server"), "--port=0",
                                         "--metrics_port=-1", f"--tls_cert={cert}",
                                         f"--tls_key={key}"], str(tmp_path))
    try:
        server.wait_ready()
        with prl.PriorClient(server.address, tls=str(cert), timeout=10) as c:
            assert c.health() == "SERVING"
            assert c.models() == []
        with prl.PriorClient(server.address, tls=cert.read_bytes(),
                             tls_server_name="localhost", timeout=10) as c:
            assert c.models() == []
        with prl.PriorClient(server.address, timeout=3) as c:
            with pytest.raises(prl.PrlError) as raised:
                c.models()
            assert raised.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(ValueError, match="CA certificates"):
            prl.PriorClient(server.address, tls=str(tmp_path / "missing.pem"))
    finally:
        server.stop()
