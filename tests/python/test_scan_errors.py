"""Bad input: every case raises a RuntimeError (c10::Error) that names the argument and says
what was expected; nothing crashes."""
import pytest
import torch

OK_A = torch.rand(2, 5, 3)
OK_B = torch.rand(2, 5, 3)


@pytest.mark.parametrize("args,needle", [
    ((torch.rand(2, 5, 3), torch.rand(2, 5, 4), None), "argument 'b' must have the shape of 'a'"),
    ((torch.rand(2, 5, 3), torch.rand(2, 5, 3, dtype=torch.float64), None),
     "argument 'b' must have the dtype of 'a'"),
    ((torch.ones(2, 5, 3, dtype=torch.int32), torch.ones(2, 5, 3, dtype=torch.int32), None),
     "argument 'a' has dtype Int; expected float32"),
    ((torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 5, dtype=torch.bool), None),
     "argument 'a' has dtype Bool"),
    ((torch.rand(5), torch.rand(5), None), "argument 'a' must have at least 2 dims"),
    ((OK_A, OK_B, torch.rand(2, 4)), "argument 'h0' must have shape (batch, *channels) = [2, 3]"),
    ((OK_A, OK_B, torch.rand(2, 5, 3)), "argument 'h0' must have shape"),
    ((OK_A, OK_B, torch.rand(2, 3, dtype=torch.float64)), "argument 'h0' must have the dtype"),
    ((OK_A, OK_B, torch.empty(2, 3, device="meta")), "argument 'h0' is on meta"),
])
def test_bad_input_names_argument(args, needle):
    with pytest.raises(RuntimeError) as err:
        torch.ops.seqpar.scan(*args)
    assert needle in str(err.value), str(err.value)
    assert "seqpar::scan" in str(err.value)


def test_bad_checkpoint_every():
    with pytest.raises(RuntimeError, match="argument 'checkpoint_every' must be >= 0"):
        torch.ops.seqpar.scan_checkpointed(OK_A, OK_B, None, False, -1)


def test_bad_backward_arguments():
    h = torch.rand(2, 5, 3)
    with pytest.raises(RuntimeError, match="argument 'grad_h' must have the shape of 'a'"):
        torch.ops.seqpar.scan_backward(OK_A, h, None, torch.rand(2, 4, 3), None, False)
    with pytest.raises(RuntimeError, match="argument 'grad_h_last' must have shape"):
        torch.ops.seqpar.scan_backward(OK_A, h, None, None, torch.rand(3, 3), False)


def test_cuda_tensor_without_cuda_support():
    """A CUDA tensor reaching a build without CUDA gets a message naming 'a'. On a CPU-only
    PyTorch no CUDA tensor can be made, so the CUDA kernel is reached by redispatching."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the CUDA path is tested in test_scan_cuda.py")
    ks = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)
    try:
        torch.ops.seqpar.scan.default.redispatch(ks, OK_A, OK_B, None, False)
    except RuntimeError as err:
        msg = str(err)
    else:
        pytest.fail("no error")
    if "built without CUDA support" not in msg:
        pytest.skip(f"this libseqpar has a CUDA backend ({msg.splitlines()[0]})")
    assert "argument 'a' is a CUDA tensor" in msg
