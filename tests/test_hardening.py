"""Regression tests for the defects of issue 9: each failed (or crashed) before its fix.

Cases that used to crash the interpreter run in a child process (childproc.run_child), so a
segfault is a test failure with the child's stderr, not a dead test run.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from childproc import PACKAGE_PARENT, RSS_SCALE, run_child

import minidl
import minidl.nn.functional as F
from minidl import Tensor
from minidl._kernels import conv as conv_kernels
from minidl._kernels import loss as loss_kernels
from minidl._kernels import pool as pool_kernels
from minidl.data.idx import IDXFormatError, decode_idx, read_idx
from minidl.serialization import CheckpointError


def np_max_pool_2x2(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    t = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
    return t.max(axis=(3, 5))


# -- 1. partial vector loads ----------------------------------------------------------------
def test_max_pool2d_2x2_on_a_memory_mapped_file_reads_nothing_past_its_end(tmp_path):
    run_child(
        f"""
        import numpy as np, minidl, minidl.nn.functional as F
        path = {str(tmp_path / "x.bin")!r}
        rng = np.random.default_rng(0)
        for h, w in [(262144, 4), (4097, 10), (3, 6), (2, 2), (1023, 9), (64, 33)]:
            data = rng.standard_normal((1, 1, h, w)).astype(np.float32)
            data.tofile(path)
            x = np.memmap(path, np.float32, "r", shape=(1, 1, h, w))
            out = F.max_pool2d(minidl.from_numpy(x), 2).data
            t = data[:, :, : h // 2 * 2, : w // 2 * 2].reshape(1, 1, h // 2, 2, w // 2, 2)
            assert np.array_equal(out, t.max(axis=(3, 5))), (h, w)
            del x
        """
    )


@pytest.mark.parametrize("isa", ["default", "x86-64-v3", "baseline"])
def test_max_pool2d_2x2_against_a_guard_page_on_every_instruction_set(isa):
    env = {} if isa == "default" else {"MINIDL_FORCE_ISA": isa}
    run_child(
        """
        import numpy as np, minidl, minidl.nn.functional as F
        from childproc import guarded_array
        rng = np.random.default_rng(1)
        for shape in [(3, 2, 8, 4), (1, 1, 5, 10), (2, 3, 2, 2), (1, 1, 6, 34), (1, 1, 3, 31)]:
            data = rng.standard_normal(shape).astype(np.float32)
            x = minidl.Tensor(guarded_array(data), requires_grad=True)
            out, idx = F.max_pool2d(x, 2, return_indices=True)
            n, c, h, w = shape
            t = data[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
            assert np.array_equal(out.data, t.max(axis=(3, 5))), shape
            out.sum().backward()
            assert x.grad.data.sum() == out.data.size
        """,
        env=env,
    )


# -- 2. optimizer state against its parameter ------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        "SGD([p], lr=0.1, momentum=0.9)",
        "Adam([p], lr=0.1)",
        "RMSprop([p], lr=0.1, momentum=0.5)",
        "Adagrad([p], lr=0.1)",
    ],
)
def test_optimizer_state_must_match_a_replaced_parameter(make):
    out, _ = run_child(
        f"""
        import numpy as np, minidl
        from minidl.optim import *
        p = minidl.Tensor(np.ones(4, np.float32), requires_grad=True)
        opt = {make}
        p.grad = minidl.Tensor(np.ones(4, np.float32))
        opt.step()
        p.data = np.ones(100_000, np.float32)
        p.grad = minidl.Tensor(np.ones(100_000, np.float32))
        try:
            opt.step()
        except ValueError as e:
            print(e)
        opt.state.clear()  # the documented way out: fresh state for the new parameter
        opt.step()
        assert np.all(p.data < 1)
        """
    )
    assert "state" in out and "has shape (4,)" in out and "parameter now has shape" in out


def test_sgd_with_a_replaced_larger_parameter_does_not_write_out_of_bounds():
    out, _ = run_child(
        """
        import numpy as np, minidl
        w = minidl.Tensor(np.ones(4, np.float32), requires_grad=True)
        opt = minidl.optim.SGD([w], lr=0.1, momentum=0.9)
        w.grad = minidl.Tensor(np.ones(4, np.float32)); opt.step()
        w.data = np.ones(4_000_000, np.float32); w.grad = minidl.Tensor(np.ones(4_000_000, np.float32))
        try:
            opt.step()
        except ValueError as e:
            print("raised", e)
        """
    )
    assert "raised SGD.step: state 'momentum_buffer'" in out


def test_sgd_kernel_checks_its_buffers():
    from minidl._kernels import optim as optim_kernels

    p, g = np.ones(8, np.float32), np.ones(8, np.float32)
    with pytest.raises(ValueError, match="sgd_update"):
        optim_kernels.sgd_update(p, g, np.ones(4, np.float32), 0.1, 0.9, 0, 0, False, False, 1)
    with pytest.raises(ValueError, match="sgd_update"):
        optim_kernels.sgd_update(p, np.ones(9, np.float32), p, 0.1, 0, 0, 0, False, False, 1)


def test_sgd_updates_a_strided_parameter_in_place():
    base = np.ones((4, 6), np.float32)
    p = Tensor(base, requires_grad=True)
    p.data = base[:, ::2]
    p.grad = Tensor(np.ones((4, 3), np.float32))
    minidl.optim.SGD([p], lr=0.5).step()
    np.testing.assert_array_equal(base[:, ::2], 0.5)
    np.testing.assert_array_equal(base[:, 1::2], 1.0)


# -- 3. integer arrays that backward indexes with --------------------------------------------
def test_cross_entropy_target_mutated_after_forward_does_not_change_backward():
    out, _ = run_child(
        """
        import numpy as np, minidl, minidl.nn.functional as F
        rng = np.random.default_rng(0)
        x0 = rng.standard_normal((6, 3)).astype(np.float32)
        for reduction in ("mean", "sum"):
            grads = []
            for mutate in (False, True):
                x = minidl.Tensor(x0.copy(), requires_grad=True)
                t = np.array([0, 1, 2, 0, 1, 2])
                loss = F.cross_entropy(x, t, reduction=reduction)
                if mutate:
                    t[:] = 10**12
                loss.backward()
                grads.append(x.grad.data)
            assert np.array_equal(grads[0], grads[1])
        print("same")
        """
    )
    assert out == "same"


def test_max_pool2d_returned_indices_are_the_callers_copy():
    out, _ = run_child(
        """
        import numpy as np, minidl, minidl.nn.functional as F
        x = minidl.Tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4), requires_grad=True)
        o, i = F.max_pool2d(x, 2, return_indices=True)
        i.data[...] = 10**12
        o.sum().backward()
        print(int(x.grad.data.sum()), x.grad.data[0, 0, 1, 1], x.grad.data[0, 0, 3, 3])
        """
    )
    assert out == "4 1.0 1.0"


def test_pool_and_loss_kernels_reject_out_of_range_indices():
    grad_out = np.ones((1, 1, 2, 2), np.float32)
    grad_x = np.zeros((1, 1, 4, 4), np.float32)
    for bad in (16, -2, 10**12, 2**63 - 1, -(2**63)):
        index = np.array([0, 1, 2, bad], np.int64).reshape(1, 1, 2, 2)
        with pytest.raises(ValueError, match=r"max_pool2d_backward: index .* outside \[-1, 16\)"):
            pool_kernels.max_pool2d_backward(grad_out, index, grad_x, 1)
    # The scan is vectorized: a bad index far into the array, after a run of good ones, is
    # found and named by its position.
    big_out = np.ones((1, 3, 20, 20), np.float32)
    big_index = np.zeros((1, 3, 20, 20), np.int64)
    big_index[0, 2, 19, 7] = 1600
    with pytest.raises(ValueError, match=r"index 1600 at flat position 1187 "):
        pool_kernels.max_pool2d_backward(big_out, big_index, np.zeros((1, 3, 40, 40), np.float32), 1)
    with pytest.raises(ValueError, match="max_pool2d_backward"):
        pool_kernels.max_pool2d_backward(grad_out, np.zeros((1, 1, 2, 1), np.int64), grad_x, 1)
    prob = np.full((2, 3), 1 / 3, np.float32)
    grad = np.zeros_like(prob)
    with pytest.raises(ValueError, match=r"target\[1\] = 3 is outside \[0, 3\)"):
        loss_kernels.softmax_cross_entropy_backward(prob, np.array([0, 3]), 1.0, grad)
    assert not grad.any()  # nothing written before the check
    with pytest.raises(ValueError, match="shapes do not match"):
        loss_kernels.softmax_cross_entropy_backward(prob, np.array([0]), 1.0, grad)


def test_multi_margin_target_is_copied():
    x = Tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    t = np.array([0, 1, 2])
    loss = F.multi_margin_loss(x, t)
    t[:] = 3
    loss.backward()
    x2 = Tensor(x.data.copy(), requires_grad=True)
    F.multi_margin_loss(x2, np.array([0, 1, 2])).backward()
    np.testing.assert_array_equal(x.grad.data, x2.grad.data)


# -- 4. set_num_threads ----------------------------------------------------------------------
def test_set_num_threads_is_bounded_and_type_checked():
    from minidl.threads import max_num_threads

    before = minidl.get_num_threads()
    try:
        for n in (50_000, 10**6, 2**31, 2**70, 0, -1, max_num_threads() + 1):
            with pytest.raises(ValueError, match=r"set_num_threads: expected 1 <= n <= \d+"):
                minidl.set_num_threads(n)
        for n in (2.0, "2", None, True):
            with pytest.raises(TypeError, match="set_num_threads: expected an int"):
                minidl.set_num_threads(n)
        minidl.set_num_threads(np.int64(1))
        assert minidl.get_num_threads() == 1
        assert max_num_threads() == 4 * os.cpu_count()
    finally:
        minidl.set_num_threads(before)


def test_omp_num_threads_is_bounded_too():
    out, _ = run_child(
        "import minidl; print(minidl.get_num_threads())", env={"OMP_NUM_THREADS": "50000"}
    )
    assert 1 <= int(out) <= 4 * os.cpu_count()


# -- 5. 64-bit geometry ----------------------------------------------------------------------
def test_conv2d_huge_stride_and_padding_give_pytorchs_zeros_in_little_memory():
    out, peak = run_child(
        """
        import numpy as np, minidl, minidl.nn.functional as F
        for c, oc in [(16, 16), (1, 4), (3, 64)]:
            x = minidl.Tensor(np.ones((1, c, 4, 4), np.float32), requires_grad=True)
            w = minidl.Tensor(np.ones((oc, c, 3, 3), np.float32), requires_grad=True)
            y = F.conv2d(x, w, stride=2**34, padding=2**32)
            assert y.shape == (1, oc, 1, 1) and not y.data.any(), y.data.ravel()[:4]
            y.sum().backward()
            assert not x.grad.data.any() and not w.grad.data.any()
        print("ok")
        """
    )
    assert out == "ok"
    assert peak < 400 * RSS_SCALE, f"peak RSS {peak} MiB"


def test_conv2d_geometry_beyond_2_to_the_40_is_a_clear_error():
    x = np.ones((1, 1, 4, 4), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"conv2d: stride must be at most 2\*\*40"):
        F.conv2d(minidl.from_numpy(x), minidl.from_numpy(w), stride=2**64)
    with pytest.raises(ValueError, match=r"max_pool2d: stride must be at most 2\*\*40"):
        F.max_pool2d(minidl.from_numpy(x), 2, stride=2**63)


def test_conv_kernels_take_64_bit_offsets():
    # A padding of exactly 2**32 used to be narrowed to 0 by the C int parameters.
    x = np.ones((1, 16, 4, 4), np.float32)
    w = np.ones((16, 16, 1, 1), np.float32)
    out = np.full((1, 16, 1, 1), 7, np.float32)
    conv_kernels.conv2d_forward(x, w, None, out, 2**34, 2**34, 2**32, 2**32, 1, 1, 1, False, 1)
    assert not out.any()


# -- 6. hostile files ------------------------------------------------------------------------
def deflate_bomb_idx(path, declared=10, inflated=1 << 30):
    """A gzip IDX file whose header declares `declared` uint8 elements followed by
    `inflated` zero bytes (about 1 MB on disk for 1 GiB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [c.compress(bytes([0, 0, 8, 1]) + declared.to_bytes(4, "big"))]
    block = bytes(1 << 20)
    for _ in range(inflated >> 20):
        parts.append(c.compress(block))
    parts.append(c.flush())
    path.write_bytes(b"".join(parts))


def test_gzip_idx_bomb_fails_fast_in_bounded_memory(tmp_path):
    deflate_bomb_idx(tmp_path / "bomb-ubyte.gz")
    out, peak = run_child(
        f"""
        from minidl.data.idx import read_idx, IDXFormatError
        try:
            read_idx({str(tmp_path / "bomb-ubyte.gz")!r})
        except IDXFormatError as e:
            print(e)
        """
    )
    assert "bomb-ubyte.gz: trailing bytes" in out
    assert peak < 200 * RSS_SCALE, f"peak RSS {peak} MiB"


def test_gzip_idx_header_declaring_more_than_the_file_can_hold(tmp_path):
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (60000, 28, 28))
    path = tmp_path / "short-ubyte.gz"
    path.write_bytes(gzip.compress(header + bytes(100)))
    with pytest.raises(IDXFormatError, match=r"short-ubyte.gz: truncated: the header declares"):
        read_idx(path)
    header = bytes([0, 0, 8, 2]) + (2**32 - 1).to_bytes(4, "big") * 2
    with pytest.raises(IDXFormatError, match="more than the .* byte limit"):
        decode_idx(gzip.compress(header), "huge.gz")


def test_idx_with_more_than_64_dimensions_names_the_file(tmp_path):
    path = tmp_path / "deep-idx"
    path.write_bytes(bytes([0, 0, 8, 65]) + (1).to_bytes(4, "big") * 65 + b"\x07")
    with pytest.raises(IDXFormatError, match=r"deep-idx: 65 dimensions: at most 64"):
        read_idx(path)
    path.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(IDXFormatError, match=r"deep-idx: 65 dimensions"):
        read_idx(path)


def write_zip(path, members: dict, deflate=()):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            kind = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            z.writestr(name, data, compress_type=kind)


def npy_bytes(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def manifest_npy(obj) -> bytes:
    return npy_bytes(np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8))


def good_manifest(root):
    return {"format": "minidl.checkpoint", "version": 1, "root": root}


def test_checkpoint_with_a_deflated_manifest_bomb(tmp_path):
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({1 << 30},), }}"
    header = header.ljust(118) + "\n"
    payload = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    path = tmp_path / "bomb.ckpt"
    info = zipfile.ZipInfo("__minidl__.npy")
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as z, z.open(info, "w", force_zip64=True) as f:
        f.write(payload)
        block = b" " * (1 << 20)
        for _ in range(1 << 10):
            f.write(block)
    assert path.stat().st_size < 4 << 20
    out, peak = run_child(
        f"""
        import minidl
        try:
            minidl.load({str(path)!r})
        except minidl.serialization.CheckpointError as e:
            print(e)
        """
    )
    assert "bomb.ckpt" in out and "refused" in out
    assert peak < 200 * RSS_SCALE, f"peak RSS {peak} MiB"


@pytest.mark.parametrize(
    "case",
    [
        "pickle",
        "nesting",
        "bad_keys",
        "bad_shape",
        "twice",
        "header_lies",
        "overlap",
        "not_npy",
        "manifest_dtype",
    ],
)
def test_hostile_checkpoints_raise_checkpoint_error_naming_the_file(tmp_path, case):
    path = tmp_path / f"{case}.ckpt"
    arr = {"type": "array", "key": "a0", "dtype": "<f8", "shape": [3]}
    a0 = npy_bytes(np.zeros(3))
    if case == "pickle":
        write_zip(
            path,
            {
                "__minidl__.npy": manifest_npy(
                    good_manifest({"type": "array", "key": "a0", "dtype": "|O", "shape": [1]})
                ),
                "a0.npy": npy_bytes(np.array([{"x": 1}], dtype=object)),
            },
        )
    elif case == "nesting":
        text = json.dumps(good_manifest({"type": "none"}))
        text = text.replace('{"type": "none"}', "[" * 100_000 + "]" * 100_000)
        write_zip(path, {"__minidl__.npy": npy_bytes(np.frombuffer(text.encode(), np.uint8))})
    elif case == "bad_keys":
        write_zip(
            path,
            {
                "__minidl__.npy": manifest_npy(
                    good_manifest({"type": "dict", "keys": [[1, 2]], "values": [{"type": "none"}]})
                )
            },
        )
    elif case == "bad_shape":
        write_zip(
            path,
            {"__minidl__.npy": manifest_npy(good_manifest({**arr, "shape": "3"})), "a0.npy": a0},
        )
    elif case == "twice":
        write_zip(
            path,
            {
                "__minidl__.npy": manifest_npy(
                    good_manifest({"type": "list", "items": [arr] * 1000})
                ),
                "a0.npy": a0,
            },
        )
    elif case == "header_lies":
        lie = a0.replace(b"'shape': (3,)", b"'shape': (9,)")
        write_zip(path, {"__minidl__.npy": manifest_npy(good_manifest(arr)), "a0.npy": lie})
    elif case == "overlap":
        write_zip(path, {"__minidl__.npy": manifest_npy(good_manifest(arr)), "a0.npy": a0})
        data = bytearray(path.read_bytes())
        # Claim a huge compressed size for a0 in the central directory.
        cd = data.rfind(b"PK\x01\x02")
        data[cd + 20 : cd + 24] = (len(data) * 4).to_bytes(4, "little")
        data[cd + 24 : cd + 28] = (len(data) * 4).to_bytes(4, "little")
        path.write_bytes(bytes(data))
    elif case == "not_npy":
        write_zip(path, {"__minidl__.npy": b"\x93NUMPY\x09\x00garbage"})
    elif case == "manifest_dtype":
        write_zip(path, {"__minidl__.npy": npy_bytes(np.zeros(4))})
    with pytest.raises(CheckpointError, match=f"{case}.ckpt"):
        minidl.load(path)


# -- 7. atomic writes ------------------------------------------------------------------------
def test_a_killed_save_leaves_a_part_file_that_the_next_save_removes(tmp_path):
    target = tmp_path / "model.ckpt"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import numpy as np, time, minidl
real = np.savez
def slow(f, **arrays):
    f.write(b"PK partial")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
np.savez = slow
minidl.save({{"w": np.ones(10)}}, {str(target)!r})
""",
        ],
        env={**os.environ, "PYTHONPATH": str(PACKAGE_PARENT)},
        cwd=str(PACKAGE_PARENT),  # `-c` puts the cwd first on sys.path
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait()
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert len(leftovers) == 1
    # A live writer's temporary of the same target, and another target's, must survive.
    live = tmp_path / f".model.ckpt.{os.getpid()}.0000abcd.part"
    live.write_bytes(b"in progress")
    other = tmp_path / ".other.ckpt.1.0000abcd.part"
    other.write_bytes(b"x")
    minidl.save({"w": np.ones(3)}, target)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["model.ckpt", live.name, other.name]), names
    np.testing.assert_array_equal(minidl.load(target)["w"], np.ones(3))


def test_atomic_writes_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        minidl.save({"a": 1}, tmp_path / "private.ckpt")
    finally:
        os.umask(old)
    assert (tmp_path / "private.ckpt").stat().st_mode & 0o777 == 0o640


# -- 8. ignore_index with non-finite logits, zero-size inputs --------------------------------
def test_ignored_rows_with_inf_and_nan_logits_leave_the_loss_finite():
    rng = np.random.default_rng(0)
    good = rng.standard_normal((3, 4)).astype(np.float32)
    x0 = np.concatenate([good, [[np.inf, 0, 0, 0], [np.nan] * 4, [-np.inf] * 4]]).astype(np.float32)
    t = np.array([0, 1, 3, -100, -100, -100])
    for smoothing in (0.0, 0.1):
        x = Tensor(x0.copy(), requires_grad=True)
        loss = F.cross_entropy(x, t, label_smoothing=smoothing)
        ref = F.cross_entropy(Tensor(good), t[:3], label_smoothing=smoothing)
        np.testing.assert_allclose(loss.data, ref.data, rtol=1e-6)
        loss.backward()
        assert np.isfinite(x.grad.data).all()
        assert not x.grad.data[3:].any()


def test_zero_size_products_return_pytorchs_zeros():
    for sa, sb, expected in [
        ((2, 0), (0, 3), (2, 3)),
        ((0, 4), (4, 3), (0, 3)),
        ((2, 4), (4, 0), (2, 0)),
        ((5, 2, 0), (5, 0, 3), (5, 2, 3)),
        ((3,), (3, 0), (0,)),
    ]:
        a = Tensor(np.ones(sa, np.float32), requires_grad=True)
        b = Tensor(np.ones(sb, np.float32), requires_grad=True)
        y = a @ b
        assert y.shape == expected and not y.data.any()
        y.sum().backward()
        assert a.grad.shape == sa and b.grad.shape == sb and not a.grad.data.any()
    x = Tensor(np.ones((2, 0), np.float32), requires_grad=True)
    w = Tensor(np.ones((3, 0), np.float32), requires_grad=True)
    bias = Tensor(np.arange(3, dtype=np.float32), requires_grad=True)
    y = F.linear(x, w, bias)
    np.testing.assert_array_equal(y.data, [[0, 1, 2], [0, 1, 2]])
    y.sum().backward()
    np.testing.assert_array_equal(bias.grad.data, [2, 2, 2])


def test_zero_size_losses_softmax_and_0d_reductions():
    with pytest.raises(ValueError, match="cross_entropy: target 0 is out of range for 0 classes"):
        F.cross_entropy(Tensor(np.ones((2, 0), np.float32)), np.zeros(2, np.int64))
    empty = F.cross_entropy(Tensor(np.ones((0, 0), np.float32)), np.zeros(0, np.int64))
    assert np.isnan(empty.data)
    for fn in (F.softmax, F.log_softmax):
        out = fn(Tensor(np.ones((2, 0), np.float32)), dim=1)
        assert out.shape == (2, 0)
    s = Tensor(np.array(3.0), requires_grad=True)
    for reduce in ("sum", "mean", "max", "min"):
        for axis in (0, -1):
            out = getattr(s, reduce)(axis=axis)
            out = out[0] if isinstance(out, tuple) else out  # max/min: (values, indices)
            assert out.shape == () and out.item() == 3.0
    s.sum(axis=0).backward()
    assert s.grad.item() == 1.0
    with pytest.raises(ValueError, match="sum: axis 1 is out of range for a 0-d tensor"):
        s.sum(axis=1)


# -- 9. conv weight gradient with infinities, scratch cache ----------------------------------
@pytest.mark.parametrize("oc, stride", [(4, 1), (16, 1), (24, 2), (64, 1)])
def test_conv_weight_gradient_with_an_infinite_input_is_exact(oc, stride):
    x = np.zeros((2, 3, 9, 9), np.float32)
    x[1, 2, 3, 6] = np.inf
    x[0, 0, 5, 8] = -np.inf
    xt = Tensor(x)
    w = Tensor(np.ones((oc, 3, 3, 3), np.float32), requires_grad=True)
    F.conv2d(xt, w, stride=stride).sum().backward()
    # Reference: windows gathered in float64; the upstream gradient is 1, so no 0 * inf.
    x64 = x.astype(np.float64)
    out = (9 - 3) // stride + 1
    ref = np.zeros((3, 3, 3))
    for kh in range(3):
        for kw in range(3):
            win = x64[:, :, kh : kh + stride * out : stride, kw : kw + stride * out : stride]
            ref[:, kh, kw] = win.sum(axis=(0, 2, 3))
    for o in range(oc):
        np.testing.assert_array_equal(w.grad.data[o], ref.astype(np.float32))


@pytest.mark.parametrize("algorithm", ["auto", "winograd"])
def test_winograd_weight_gradient_with_an_infinite_input_is_exact(algorithm):
    """The Winograd transforms turn an Inf into Inf - Inf = NaN (for the weight gradient, which
    "auto" gives Winograd from 16 channels on where the ISA rule says so). A non-finite
    Winograd weight gradient is redone by the exact kernel: it was NaN where the exact sum is
    +-Inf."""
    from minidl.backends import conv as conv_backend

    x = np.zeros((2, 16, 9, 9), np.float32)
    x[1, 2, 3, 6] = np.inf
    x[0, 0, 5, 8] = -np.inf
    w = Tensor(np.ones((16, 16, 3, 3), np.float32), requires_grad=True)
    saved = conv_backend.algorithm
    conv_backend.algorithm = algorithm
    try:
        F.conv2d(Tensor(x), w).sum().backward()
    finally:
        conv_backend.algorithm = saved
    x64 = x.astype(np.float64)
    ref = np.zeros((16, 3, 3))
    for kh in range(3):
        for kw in range(3):
            ref[:, kh, kw] = x64[:, :, kh : kh + 7, kw : kw + 7].sum(axis=(0, 2, 3))
    for o in range(16):
        np.testing.assert_array_equal(w.grad.data[o], ref.astype(np.float32))


def test_conv_scratch_cache_is_bounded_and_released_after_a_large_call():
    out, _ = run_child(
        """
        import numpy as np, minidl, minidl.nn.functional as F
        from minidl._kernels import conv
        def rss_mib():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096 / 2**20
        x = minidl.Tensor(np.ones((2048, 1, 64, 64), np.float32))  # 32 MiB
        w = minidl.Tensor(np.ones((4, 1, 5, 5), np.float32))
        F.conv2d(x, w, padding=2)  # padded copy ~ 3x the input: above the cache bound
        cached = sum(b.nbytes for b in conv._scratch_store.buffers.values())
        assert cached <= conv.SCRATCH_CACHE_BYTES, cached
        small = minidl.Tensor(np.ones((2, 1, 28, 28), np.float32))
        F.conv2d(small, w, padding=2)
        print(round(rss_mib()))
        """
    )
    # Resident after the call: the interpreter, the input (32 MiB), the output (~64 MiB).
    assert int(out) < 350 * RSS_SCALE, out


@pytest.mark.parametrize(
    "field, value, what",
    [
        (6, 0xFF, "a 'version needed' zipfile does not know (NotImplementedError)"),
        (8, 0x01, "the encryption flag (RuntimeError: password required)"),
        (8, 0x20, "flag bit 5, compressed patched data (NotImplementedError)"),
        (10, 99, "an unknown compression method (NotImplementedError)"),
    ],
)
@pytest.mark.parametrize("torch_layout", [False, True])
def test_checkpoint_with_a_corrupt_zip_header_raises_checkpoint_error(
    tmp_path, field, value, what, torch_layout
):
    """zipfile raises more than BadZipFile on a flipped header byte (found by the fuzz suite):
    every such file is a CheckpointError naming it, for minidl's format and PyTorch's."""
    path = tmp_path / "model.ckpt"
    if torch_layout:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    else:
        minidl.save({"w": minidl.ones(3)}, path)
    data = bytearray(path.read_bytes())
    entry = data.find(b"PK\x01\x02")  # the first central-directory entry
    data[entry + field] = value
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=str(path).replace(".", r"\.")):
        minidl.load(path)
